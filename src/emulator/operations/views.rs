//! Authentication sessions (GetAuthenticationUrl, CancelParticipantAuthentication) and
//! DescribeView's canned views.

use crate::api::model::*;
use crate::api::ErrorCode;
use crate::emulator::state::{ServiceError, State};

impl State {
    pub fn get_authentication_url(
        &mut self,
        token: &str,
        req: GetAuthenticationUrlRequest,
    ) -> Result<GetAuthenticationUrlResponse, ServiceError> {
        let (pid, _) = self.live_participant_for_connection(token)?;
        if req.session_id.len() != 36 {
            return Err(ServiceError::validation("SessionId must be 36 characters"));
        }
        if req.redirect_uri.is_empty() || req.redirect_uri.len() > 1024 {
            return Err(ServiceError::validation(
                "RedirectUri must be 1 to 1024 characters",
            ));
        }
        self.auth_sessions.insert(req.session_id.clone(), pid);
        Ok(GetAuthenticationUrlResponse {
            authentication_url: Some(format!(
                "{}/authenticate?session={}&redirect_uri={}",
                self.base_url,
                req.session_id,
                url_encode(&req.redirect_uri)
            )),
        })
    }

    pub fn cancel_participant_authentication(
        &mut self,
        token: &str,
        req: CancelParticipantAuthenticationRequest,
    ) -> Result<EmptyResponse, ServiceError> {
        let (pid, _) = self.live_participant_for_connection(token)?;
        match self.auth_sessions.get(&req.session_id) {
            Some(owner) if owner == &pid => {
                self.auth_sessions.remove(&req.session_id);
                Ok(EmptyResponse {})
            }
            _ => Err(ServiceError::validation(format!(
                "No authentication session {}",
                req.session_id
            ))),
        }
    }

    pub fn describe_view(
        &mut self,
        token: &str,
        view_token: &str,
    ) -> Result<DescribeViewResponse, ServiceError> {
        self.participant_for_connection(token)?;
        let known = ["interactive-list", "cards", "confirmation"];
        if !known.contains(&view_token) {
            return Err(ServiceError::new(
                ErrorCode::ResourceNotFound,
                format!("View {view_token} not found"),
            ));
        }
        Ok(DescribeViewResponse {
            view: Some(View {
                id: Some(view_token.to_string()),
                arn: Some(format!(
                    "arn:aws:connect:us-east-1:000000000000:instance/emulator/view/{view_token}"
                )),
                name: Some(view_token.to_string()),
                version: Some(1),
                content: Some(ViewContent {
                    input_schema: Some(r#"{"type":"object"}"#.to_string()),
                    template: Some(r#"{"Head":{},"Body":{}}"#.to_string()),
                    actions: Some(vec!["ActionSelected".into(), "Cancel".into()]),
                }),
            }),
        })
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
