//! The `connect-chatd` binary: argument parsing, logging, signals and exit codes around
//! the library's pieces.

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};
use connect_chatd::cli::exit;
use connect_chatd::cli::tail::TailError;
use connect_chatd::cli::{run as daemon, sessions, talk};
use connect_chatd::cli::{Cli, Command, ConfigError, ConnectArgs, ConnectionTypeArg, EmulatorArgs, TailArgs};
use connect_chatd::session::{SessionError, SessionOutcome};
use std::process::ExitCode;

fn main() -> ExitCode {
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m).map(|cli| (cli, m)));
    let (cli, matches) = match parsed {
        Ok(v) => v,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp
                | clap::error::ErrorKind::DisplayVersion
                | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => exit::code(exit::OK),
                _ => exit::code(exit::CONFIG),
            };
        }
    };
    let default_level = match cli.command {
        // The demo narrates reconnects and renewals in its own output; log records
        // would break into the rendered chat.
        Command::Demo(_) => "error",
        _ => "info",
    };
    // The daemon's log settings come from its configuration, where the flags are the
    // top layer (only when given on the command line: the environment is a lower one).
    let mut run_overrides = None;
    let daemon_config = match &cli.command {
        Command::Run(args) | Command::CheckConfig(args) => {
            let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
            let mut overrides = daemon::overrides(args);
            overrides.log_level = cli.log_level.clone().filter(|_| given("log_level"));
            overrides.log_format = given("log_format").then_some(cli.log_format);
            run_overrides = Some(overrides.clone());
            match daemon::load(args, &overrides) {
                Ok(cfg) => Some(cfg),
                Err(code) => return exit::code(code),
            }
        }
        _ => None,
    };
    match &daemon_config {
        Some(cfg) => connect_chatd::cli::logging::init(cfg.log.format, &cfg.log.level),
        None => connect_chatd::cli::logging::init(
            cli.log_format,
            cli.log_level.as_deref().unwrap_or(default_level),
        ),
    }
    // Many chats in one process use both cores; one chat needs no more than one thread.
    let runtime = if matches!(cli.command, Command::Run(_)) {
        tokio::runtime::Builder::new_multi_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("connect-chatd: cannot start the runtime: {e}");
            return exit::code(exit::FAILURE);
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Tail(args) => tail(args).await,
            Command::Connect(args) => connect(args).await,
            Command::Emulator(args) => emulator(args).await,
            Command::Demo(args) => demo(args.pace).await,
            Command::Run(args) => {
                let (path, overrides) = (
                    args.config.clone(),
                    run_overrides.clone().expect("run has overrides"),
                );
                let reload = move || connect_chatd::cli::config::load_from_process_env(&path, &overrides);
                daemon::run(daemon_config.expect("loaded above"), reload, shutdown_signal()).await
            }
            Command::CheckConfig(_) => daemon::check_config(daemon_config.as_ref().expect("loaded above")),
            Command::Sessions(args) => sessions::sessions(args).await,
            Command::Stream(args) => sessions::stream(args).await,
            Command::Send(args) => talk::send(args).await,
            Command::Event(args) => talk::event(args).await,
            Command::Disconnect(args) => talk::disconnect(args).await,
            Command::Attach(args) => talk::attach(args).await,
            Command::Attachment(args) => talk::attachment(args).await,
        }
    });
    // What had to finish has (a shutdown's steps are bounded inside): a write to a
    // stdout nobody reads may still hold a blocking thread, which must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    exit::code(code)
}

fn config_error(e: ConfigError) -> u8 {
    eprintln!("connect-chatd: {e}");
    exit::CONFIG
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

async fn tail(args: TailArgs) -> u8 {
    let prepared = (|| {
        Ok::<_, ConfigError>((
            args.endpoint.api_client()?,
            args.endpoint.participant_token()?,
            args.supervisor_config()?,
        ))
    })();
    let (api, token, cfg) = match prepared {
        Ok(v) => v,
        Err(e) => return config_error(e),
    };
    let store = match &args.state_dir {
        Some(dir) => match connect_chatd::session::store::StateStore::open(dir, &token) {
            Ok(s) => Some(s),
            Err(e) => return config_error(ConfigError::new("--state-dir", e.to_string())),
        },
        None => None,
    };
    let mut sink = connect_chatd::sink::JsonLines::stdout();
    match connect_chatd::cli::tail::tail(api, token, cfg, &mut sink, store.as_ref(), shutdown_signal()).await
    {
        Ok(SessionOutcome::ChatEnded) => {
            tracing::info!("the chat has ended");
            exit::OK
        }
        Ok(SessionOutcome::Shutdown) | Ok(SessionOutcome::ConsumerGone) => exit::OK,
        Err(TailError::Session(SessionError::TokenRejected(e))) => {
            eprintln!("connect-chatd: the participant token was rejected ({e}); not retrying");
            exit::TOKEN_REJECTED
        }
        Err(e) => {
            eprintln!("connect-chatd: {e}");
            exit::FAILURE
        }
    }
}

async fn connect(args: ConnectArgs) -> u8 {
    use connect_chatd::api::model::{ConnectionType, CreateParticipantConnectionRequest};
    let prepared =
        (|| Ok::<_, ConfigError>((args.endpoint.api_client()?, args.endpoint.participant_token()?)))();
    let (api, token) = match prepared {
        Ok(v) => v,
        Err(e) => return config_error(e),
    };
    let mut types: Vec<ConnectionType> = Vec::new();
    for t in &args.types {
        let t = match t {
            ConnectionTypeArg::Websocket => ConnectionType::Websocket,
            ConnectionTypeArg::ConnectionCredentials => ConnectionType::ConnectionCredentials,
            ConnectionTypeArg::Webrtc => ConnectionType::WebrtcConnection,
        };
        if !types.contains(&t) {
            types.push(t);
        }
    }
    let request = CreateParticipantConnectionRequest {
        connection_types: Some(types),
        connect_participant: args.connect_participant.then_some(true),
    };
    match api.create_participant_connection(&token, &request).await {
        Ok(resp) => {
            // The response is the point of this command: it is printed whole, tokens included.
            match serde_json::to_string_pretty(&resp) {
                Ok(s) => {
                    println!("{s}");
                    exit::OK
                }
                Err(e) => {
                    eprintln!("connect-chatd: {e}");
                    exit::FAILURE
                }
            }
        }
        Err(e) if e.is_access_denied() => {
            eprintln!("connect-chatd: the participant token was rejected ({e})");
            exit::TOKEN_REJECTED
        }
        Err(e) => {
            eprintln!("connect-chatd: {e}");
            exit::FAILURE
        }
    }
}

async fn emulator(args: EmulatorArgs) -> u8 {
    use connect_chatd::cli::seconds;
    use connect_chatd::emulator::{Emulator, EmulatorConfig, Timing};
    let timing = (|| {
        Ok::<_, ConfigError>(Timing {
            connect_window: seconds("--connect-window", args.connect_window)?,
            connection_expiry: seconds("--connection-expiry", args.connection_expiry)?,
            token_expiry: seconds("--token-expiry", args.token_expiry)?,
            ..Default::default()
        })
    })();
    let timing = match timing {
        Ok(t) => t,
        Err(e) => return config_error(e),
    };
    let emu = match Emulator::start(EmulatorConfig {
        listen: args.listen,
        timing,
        tls: args.tls,
        ..Default::default()
    })
    .await
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("connect-chatd: cannot listen on {}: {e}", args.listen);
            return exit::FAILURE;
        }
    };
    let mut line = serde_json::json!({ "Endpoint": emu.endpoint() });
    let mut ca_note = String::new();
    if let Some(pem) = emu.ca_pem() {
        let path = args.tls_ca_out.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!("connect-chatd-emulator-{}-ca.pem", emu.addr().port()))
        });
        if let Err(e) = std::fs::write(&path, pem) {
            eprintln!("connect-chatd: cannot write the CA to {}: {e}", path.display());
            return exit::FAILURE;
        }
        line["CaFile"] = path.display().to_string().into();
        ca_note = format!(" (TLS; its CA is in {}: give it as ca_file)", path.display());
    }
    if args.create_chat {
        let chat = emu.create_chat("Customer");
        line["ContactId"] = chat.contact_id.into();
        line["ParticipantId"] = chat.participant_id.into();
        line["ParticipantToken"] = chat.participant_token.expose().into();
    }
    println!("{line}");
    eprintln!(
        "connect-chatd: emulator listening on {}{ca_note}; Ctrl-C to stop",
        emu.endpoint()
    );
    shutdown_signal().await;
    emu.shutdown().await;
    exit::OK
}

async fn demo(pace: f64) -> u8 {
    let mut out = std::io::stdout();
    match connect_chatd::cli::demo::run(pace, &mut out).await {
        Ok(s) if s.lost == 0 && s.duplicates == 0 => exit::OK,
        Ok(_) => exit::FAILURE,
        Err(e) => {
            eprintln!("connect-chatd: {e}");
            exit::FAILURE
        }
    }
}
