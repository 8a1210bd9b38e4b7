//! `attach FILE` (StartAttachmentUpload, the upload, CompleteAttachmentUpload; or the
//! daemon's `attachments` route) and `attachment get ID` (GetAttachment, then its
//! presigned URL, saved under the AttachmentName the transcript gives it).

use super::{finish, finish_quiet, session_path, via_daemon, Direct, Failure, TalkTarget};
use crate::api::model::*;
use crate::api::outbound;
use crate::cli::exit;
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct AttachArgs {
    #[command(flatten)]
    pub target: TalkTarget,
    /// The file to send.
    pub file: PathBuf,
    /// Its type (default: from the file's extension).
    #[arg(long)]
    pub content_type: Option<String>,
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct AttachmentArgs {
    #[command(subcommand)]
    pub action: AttachmentAction,
}

#[derive(Debug, Subcommand)]
pub enum AttachmentAction {
    /// Download an attachment (GetAttachment, then its URL).
    Get {
        #[command(flatten)]
        target: TalkTarget,
        attachment_id: String,
        /// A file to write, `-` for stdout, or a directory (default: the current one) to
        /// save it in under its AttachmentName from the transcript, made safe.
        #[arg(short = 'o', long = "output", value_name = "PATH")]
        output: Option<PathBuf>,
    },
}

pub async fn attach(args: AttachArgs) -> u8 {
    finish(attach_inner(args).await)
}

async fn attach_inner(args: AttachArgs) -> Result<serde_json::Value, Failure> {
    let bad_file = |e: std::io::Error| Failure(exit::CONFIG, format!("{}: {e}", args.file.display()));
    let name = args
        .file
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Failure(exit::CONFIG, format!("{}: not a file name", args.file.display())))?
        .to_string();
    let size = std::fs::metadata(&args.file).map_err(bad_file)?.len();
    let content_type = outbound::attachment_type(&name, args.content_type.as_deref())?;
    outbound::attachment(&name, size)?;
    if let Some((control, session)) = args.target.daemon()? {
        let path = std::path::absolute(&args.file).map_err(bad_file)?;
        let body = serde_json::json!({"path": path, "content_type": content_type});
        return via_daemon(
            &control,
            &session_path(&session, "attachments"),
            &body,
            args.idempotency_key.as_deref(),
        )
        .await;
    }
    let bytes = std::fs::read(&args.file).map_err(bad_file)?;
    let d = args.target.direct().await?;
    let attached = outbound::attach(
        &d.api,
        &d.token,
        &name,
        &content_type,
        bytes,
        args.idempotency_key,
    )
    .await
    .map_err(|e| match e {
        outbound::AttachError::Invalid(i) => i.into(),
        outbound::AttachError::Api(a) => a.into(),
        other => Failure(exit::FAILURE, other.to_string()),
    })?;
    Ok(serde_json::to_value(attached).expect("serialises"))
}

pub async fn attachment(args: AttachmentArgs) -> u8 {
    let AttachmentAction::Get {
        target,
        attachment_id,
        output,
    } = args.action;
    finish_quiet(download(&target, &attachment_id, output.as_deref()).await)
}

async fn download(
    target: &TalkTarget,
    id: &str,
    output: Option<&Path>,
) -> Result<Option<serde_json::Value>, Failure> {
    if target.session.is_some() {
        return Err(Failure(
            exit::CONFIG,
            "attachment get talks to the service itself: give --region or --endpoint, not --session".into(),
        ));
    }
    let d = target.direct().await?;
    let got = d
        .api
        .get_attachment(
            &d.token,
            &GetAttachmentRequest {
                attachment_id: id.to_string(),
                url_expiry_in_seconds: None,
            },
        )
        .await?;
    let url = got
        .url
        .ok_or_else(|| Failure(exit::FAILURE, "GetAttachment gave no URL".into()))?;
    let bytes = outbound::get_presigned(&d.api, &url).await?;
    let write_err = |p: &Path, e: std::io::Error| Failure(exit::FAILURE, format!("{}: {e}", p.display()));
    let path = match output {
        Some(p) if p == Path::new("-") => {
            // The bytes are the output; nothing else goes to stdout.
            std::io::stdout().write_all(&bytes).map_err(|e| write_err(p, e))?;
            return Ok(None);
        }
        Some(p) if !p.is_dir() => {
            std::fs::write(p, &bytes).map_err(|e| write_err(p, e))?;
            p.to_path_buf()
        }
        dir => {
            let dir = dir.unwrap_or(Path::new("."));
            let name = attachment_name(&d, id).await?.unwrap_or_else(|| id.to_string());
            let path = dir.join(outbound::safe_file_name(&name));
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| write_err(&path, e))?;
            f.write_all(&bytes).map_err(|e| write_err(&path, e))?;
            path
        }
    };
    Ok(Some(serde_json::json!({"Path": path, "Bytes": bytes.len()})))
}

/// The AttachmentName the transcript gives this attachment.
async fn attachment_name(d: &Direct, id: &str) -> Result<Option<String>, Failure> {
    let mut next = None;
    for _ in 0..1000 {
        let page = d
            .api
            .get_transcript(
                &d.token,
                &GetTranscriptRequest {
                    max_results: Some(100),
                    next_token: next.take(),
                    scan_direction: Some(ScanDirection::Backward),
                    ..Default::default()
                },
            )
            .await?;
        for item in &page.transcript {
            for a in item.attachments.iter().flatten() {
                if a.attachment_id.as_deref() == Some(id) {
                    return Ok(a.attachment_name.clone());
                }
            }
        }
        match page.next_token {
            Some(t) if !t.is_empty() => next = Some(t),
            _ => break,
        }
    }
    Ok(None)
}
