//! The admin side of the state: chats and their participants, Items built and
//! published (stamped, kept in the transcript, sent to subscribed sockets), and the
//! end of a chat.

use super::{new_id, new_token, Chat, Outbound, Participant, State};
use crate::api::model::*;
use crate::clock::format_timestamp;
use crate::emulator::EmulatorError;

impl State {
    pub fn create_chat(
        &mut self,
        contact_id: Option<String>,
        display_name: String,
    ) -> Result<(String, String, String), EmulatorError> {
        let contact_id = contact_id.unwrap_or_else(new_id);
        if self.chats.contains_key(&contact_id) {
            return Err(EmulatorError::Invalid(format!(
                "chat {contact_id} exists already"
            )));
        }
        self.chats.insert(
            contact_id.clone(),
            Chat {
                items: Vec::new(),
                last_time: None,
                ended: false,
                participants: Vec::new(),
                attachments: 0,
            },
        );
        let (pid, token) = self.add_participant(&contact_id, display_name, ParticipantRole::Customer)?;
        Ok((contact_id, pid, token))
    }

    pub fn add_participant(
        &mut self,
        contact_id: &str,
        display_name: String,
        role: ParticipantRole,
    ) -> Result<(String, String), EmulatorError> {
        let chat = self.chat_mut(contact_id)?;
        if chat.ended {
            return Err(EmulatorError::ChatEnded(contact_id.to_string()));
        }
        let pid = new_id();
        let token = new_token("pt-");
        chat.participants.push(pid.clone());
        self.participants.insert(
            pid.clone(),
            Participant {
                id: pid.clone(),
                contact_id: contact_id.to_string(),
                display_name,
                role,
                left: false,
            },
        );
        self.participant_tokens.insert(token.clone(), pid.clone());
        let joined = self.event_from(&pid, CONTENT_TYPE_JOINED, None);
        self.publish(contact_id, joined)?;
        Ok((pid, token))
    }

    /// The participant in this chat with this name and role, added if there is none.
    pub fn participant_named(
        &mut self,
        contact_id: &str,
        display_name: &str,
        role: &ParticipantRole,
    ) -> Result<String, EmulatorError> {
        let chat = self.chat_mut(contact_id)?;
        let existing = chat.participants.clone().into_iter().find(|p| {
            self.participants
                .get(p)
                .is_some_and(|p| !p.left && p.display_name == display_name && &p.role == role)
        });
        match existing {
            Some(p) => Ok(p),
            None => Ok(self
                .add_participant(contact_id, display_name.to_string(), role.clone())?
                .0),
        }
    }

    fn chat_mut(&mut self, contact_id: &str) -> Result<&mut Chat, EmulatorError> {
        self.chats
            .get_mut(contact_id)
            .ok_or_else(|| EmulatorError::UnknownChat(contact_id.to_string()))
    }

    pub fn transcript_of(&self, contact_id: &str) -> Result<Vec<Item>, EmulatorError> {
        self.chats
            .get(contact_id)
            .map(|c| c.items.clone())
            .ok_or_else(|| EmulatorError::UnknownChat(contact_id.to_string()))
    }

    /// An Item from a participant, not yet published.
    pub fn item_from(
        &self,
        pid: &str,
        item_type: ChatItemType,
        content_type: &str,
        content: Option<String>,
    ) -> Item {
        let p = self.participants.get(pid);
        Item {
            item_type: Some(item_type),
            content_type: Some(content_type.to_string()),
            content,
            participant_id: Some(pid.to_string()),
            display_name: p.map(|p| p.display_name.clone()),
            participant_role: p.map(|p| p.role.clone()),
            ..Default::default()
        }
    }

    pub fn event_from(&self, pid: &str, content_type: &str, content: Option<String>) -> Item {
        self.item_from(pid, ChatItemType::Event, content_type, content)
    }

    /// Stamps an Item (Id, AbsoluteTime strictly after the previous one, ContactId),
    /// keeps it in the transcript unless it is ephemeral, and sends it to every
    /// subscribed socket of the chat. Nothing is replayed to sockets that subscribe later.
    pub fn publish(&mut self, contact_id: &str, mut item: Item) -> Result<Item, EmulatorError> {
        let now = self.clock.now();
        let chat = self.chat_mut(contact_id)?;
        if chat.ended {
            return Err(EmulatorError::ChatEnded(contact_id.to_string()));
        }
        let mut at = now
            .replace_nanosecond((now.nanosecond() / 1_000_000) * 1_000_000)
            .unwrap_or(now);
        if let Some(last) = chat.last_time {
            if at <= last {
                at = last + time::Duration::milliseconds(1);
            }
        }
        chat.last_time = Some(at);
        item.id = Some(new_id());
        item.absolute_time = Some(format_timestamp(at));
        item.contact_id = Some(contact_id.to_string());
        item.extra.insert("InitialContactId".into(), contact_id.into());
        if !item.is_ephemeral() {
            chat.items.push(item.clone());
        }
        if item.is_chat_ended() {
            chat.ended = true;
        }
        let participants = chat.participants.clone();
        let frame = serde_json::json!({
            "topic": "aws/chat",
            "contentType": "application/json",
            "content": serde_json::to_string(&item).expect("an Item always serialises"),
        })
        .to_string();
        let mut overflowed = Vec::new();
        for (id, s) in self.sockets.iter() {
            if s.subscribed
                && participants.contains(&s.participant_id)
                && s.tx.try_send(Outbound::Text(frame.clone())).is_err()
            {
                overflowed.push(*id);
            }
        }
        for id in overflowed {
            tracing::warn!(socket = id, "emulator: socket queue full, dropping the socket");
            self.sockets.remove(&id);
        }
        Ok(item)
    }

    pub fn end_chat(&mut self, contact_id: &str) -> Result<Item, EmulatorError> {
        let chat = self.chat_mut(contact_id)?;
        if chat.ended {
            return Err(EmulatorError::ChatEnded(contact_id.to_string()));
        }
        let item = Item {
            item_type: Some(ChatItemType::Event),
            content_type: Some(CONTENT_TYPE_CHAT_ENDED.to_string()),
            participant_role: Some(ParticipantRole::System),
            display_name: Some("SYSTEM_MESSAGE".into()),
            ..Default::default()
        };
        let item = self.publish(contact_id, item)?;
        let participants = self.chats[contact_id].participants.clone();
        self.close_sockets(
            |s| participants.contains(&s.participant_id),
            || Outbound::Close(1000, "chat ended"),
        );
        Ok(item)
    }
}
