//! CreateParticipantConnection (the presigned websocket URL, the ConnectionToken, a
//! WebRTC meeting, the connection ack) and DisconnectParticipant (the participant
//! leaves, its sockets are closed, a customer leaving ends the chat).

use crate::api::model::*;
use crate::emulator::state::{
    new_id, new_token, ConnectionTokenInfo, Outbound, PendingUrl, ServiceError, State,
};
use tokio::time::Instant;

impl State {
    pub fn create_participant_connection(
        &mut self,
        participant_token: &str,
        req: CreateParticipantConnectionRequest,
    ) -> Result<CreateParticipantConnectionResponse, ServiceError> {
        let p = self.participant_for_token(participant_token)?;
        let (pid, contact_id) = (p.id.clone(), p.contact_id.clone());
        if self.chats[&contact_id].ended {
            return Err(ServiceError::denied("The chat has ended"));
        }
        let types = req.connection_types.unwrap_or_default();
        if types.is_empty() {
            return Err(ServiceError::validation(
                "Type must name at least one connection type",
            ));
        }
        if let Some(bad) = types.iter().find(|t| matches!(t, ConnectionType::Unknown(_))) {
            return Err(ServiceError::validation(format!("Unknown connection type {bad}")));
        }
        let now = Instant::now();
        let wall = self.clock.now();
        let mut resp = CreateParticipantConnectionResponse::default();
        if types.contains(&ConnectionType::Websocket) {
            let key = new_token("");
            let expires = now + self.timing.connection_expiry;
            self.pending_urls.insert(
                key.clone(),
                PendingUrl {
                    participant_id: pid.clone(),
                    issued: now,
                    expires,
                },
            );
            let ws_base = self.base_url.replacen("http", "ws", 1);
            resp.websocket = Some(Websocket {
                url: crate::secret::PresignedUrl::new(format!(
                    "{ws_base}/websocket?X-Amz-Security-Token={key}&X-Amz-Expires={}&X-Amz-Signature={}",
                    self.timing.connect_window.as_secs(),
                    uuid::Uuid::new_v4().simple()
                )),
                connection_expiry: Timestamp(wall + self.timing.connection_expiry),
            });
        }
        if types.contains(&ConnectionType::ConnectionCredentials) {
            let token = new_token("ct-");
            self.connection_tokens.insert(
                token.clone(),
                ConnectionTokenInfo {
                    participant_id: pid.clone(),
                    expires: now + self.timing.token_expiry,
                },
            );
            resp.connection_credentials = Some(ConnectionCredentials {
                connection_token: crate::secret::Secret::new(token),
                expiry: Timestamp(wall + self.timing.token_expiry),
            });
        }
        if types.contains(&ConnectionType::WebrtcConnection) {
            let meeting = uuid::Uuid::new_v4().to_string();
            let media = |kind: &str| format!("{}/webrtc/{meeting}/{kind}", self.base_url);
            resp.webrtc_connection = Some(WebRtcConnection {
                attendee: Some(Attendee {
                    attendee_id: Some(new_id()),
                    join_token: Some(crate::secret::Secret::new(new_token("jt-"))),
                }),
                meeting: Some(WebRtcMeeting {
                    media_placement: Some(WebRtcMediaPlacement {
                        audio_host_url: Some(media("audio")),
                        audio_fallback_url: Some(media("audio-fallback")),
                        signaling_url: Some(media("signaling")),
                        event_ingestion_url: Some(media("events")),
                    }),
                    meeting_features: Some(MeetingFeaturesConfiguration {
                        audio: Some(AudioFeatures {
                            echo_reduction: Some(MeetingFeatureStatus::Available),
                        }),
                    }),
                    meeting_id: Some(meeting),
                }),
            });
        }
        if req.connect_participant == Some(true) {
            let ack = self.event_from(&pid, CONTENT_TYPE_CONNECTION_ACK, None);
            let _ = self.publish(&contact_id, ack);
        }
        Ok(resp)
    }

    pub fn disconnect_participant(
        &mut self,
        token: &str,
        _req: DisconnectParticipantRequest,
    ) -> Result<EmptyResponse, ServiceError> {
        let (pid, contact_id) = self.live_participant_for_connection(token)?;
        let left = self.event_from(&pid, CONTENT_TYPE_LEFT, None);
        let _ = self.publish(&contact_id, left);
        let customer = self.participants[&pid].role == ParticipantRole::Customer;
        if let Some(p) = self.participants.get_mut(&pid) {
            p.left = true;
        }
        self.close_sockets(
            |s| s.participant_id == pid,
            || Outbound::Close(1000, "participant disconnected"),
        );
        if customer {
            let _ = self.end_chat(&contact_id);
        }
        Ok(EmptyResponse {})
    }
}
