//! `jitr`: replay sample events through the real handlers, locally or against an endpoint,
//! seed an emulator with the sample CA, policy and CRL, check registration profiles, explain
//! why a device can or cannot connect, show a device's history from the device ledger, and sign
//! a webhook for a local run.

mod ca;
mod device;
mod doctor;
mod explain;
mod history;
mod output;
mod profiles;
mod replay;
mod seed;
mod state;
mod webhook;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "jitr", version, about = "iot-jitr local tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a handler on event files and print outcomes and the registry state.
    Replay {
        /// Which function's handler to run.
        #[arg(long, value_enum, default_value = "registration")]
        function: replay::Function,
        /// Print JSON lines instead of tables.
        #[arg(long)]
        json: bool,
        /// Use the AWS IoT API at this URL (an emulator) instead of the embedded registry.
        #[arg(long)]
        endpoint_url: Option<String>,
        /// The sample folder with registry.json (default: the folder of the first event).
        #[arg(long)]
        samples: Option<PathBuf>,
        /// Event files, replayed in the order given.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Why a device can or cannot connect: its Thing, CA binding, certificates, profile, and
    /// what registration would decide for each certificate now (reads only).
    #[command(group(clap::ArgGroup::new("target").required(true).args(["thing", "certificate"])))]
    Explain {
        /// The IoT API at this URL (an emulator); without it, AWS through the SDK's usual
        /// credential and region chain.
        #[arg(long)]
        endpoint_url: Option<String>,
        /// The device's Thing name.
        #[arg(long)]
        thing: Option<String>,
        /// A certificate id (the SHA-256 of its DER, as IoT Core shows it).
        #[arg(long)]
        certificate: Option<String>,
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// A device's record and decisions in time order, from the device ledger
    /// (`DEVICE_LEDGER_TABLE`).
    History {
        /// The IoT/DynamoDB API at this URL (an emulator); without it, AWS.
        #[arg(long)]
        endpoint_url: Option<String>,
        /// The device's Thing name.
        #[arg(
            long,
            required_unless_present = "device_id",
            conflicts_with = "device_id"
        )]
        thing: Option<String>,
        /// The device's device-management id (with `DEVICE_ID_ATTRIBUTE`), e.g. Mender's.
        #[arg(long)]
        device_id: Option<String>,
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Check a deployed stack: its CAs, the rule, policies and thing types, the ledger, the
    /// profiles and revocation lists, the webhook secret, the alarm topic and the DLQs. One
    /// line per check; exits 1 on any problem. Reads only.
    Doctor {
        /// The CloudFormation stack name (samconfig.toml's stack_name).
        #[arg(long)]
        stack: String,
        /// The AWS APIs at this URL (an emulator); without it, AWS through the SDK's usual chain.
        #[arg(long)]
        endpoint_url: Option<String>,
    },
    /// A device's connect, for trying JITR by hand.
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// Device CAs.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Mender webhooks for local runs.
    Webhook {
        #[command(subcommand)]
        command: WebhookCommand,
    },
    /// Registration profiles documents.
    Profiles {
        #[command(subcommand)]
        command: ProfilesCommand,
    },
    /// Load the sample CA (with a verification certificate), device policy and CRL into an emulator.
    Seed {
        /// The emulator's URL (ministack: http://127.0.0.1:4566).
        #[arg(long)]
        endpoint_url: String,
        /// The sample folder with registry.json and the certificates.
        #[arg(long, default_value = "events/registration")]
        samples: PathBuf,
        /// The device policy document.
        #[arg(long, default_value = "policies/device-policy.json")]
        policy: PathBuf,
        /// The bucket the CRL is published to.
        #[arg(long, default_value = "jitr-samples")]
        bucket: String,
        /// The device ledger table created for local runs (`jitr history`, DEVICE_LEDGER_TABLE).
        #[arg(long, default_value = "jitr-ledger")]
        ledger_table: String,
    },
}

#[derive(Debug, Subcommand)]
enum CaCommand {
    /// Register a device CA ACTIVE with auto-registration on: the registration code is fetched,
    /// the verification certificate made and signed here (the key never leaves this machine).
    /// Prints the CA id for the configuration.
    Register {
        /// The CA certificate (PEM).
        #[arg(long)]
        ca_cert: PathBuf,
        /// The CA's private key (PEM), read locally only.
        #[arg(long)]
        ca_key: PathBuf,
        /// The IoT API at this URL (an emulator); without it, AWS through the SDK's usual chain.
        #[arg(long)]
        endpoint_url: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum DeviceCommand {
    /// Connect once over mutual TLS with the certificate and its CA (the chain JITR needs on a
    /// first connect), send an MQTT CONNECT and say what the broker answered. A first connect is
    /// closed while IoT Core registers the certificate; the next one is accepted once admitted.
    Connect {
        /// The device certificate (PEM).
        #[arg(long)]
        cert: PathBuf,
        /// The device's private key (PEM), read locally only.
        #[arg(long)]
        key: PathBuf,
        /// The CA certificate that signed it (PEM), sent after it as the chain.
        #[arg(long)]
        ca: PathBuf,
        /// The MQTT client id (default: the certificate's common name, the usual Thing name).
        #[arg(long)]
        client_id: Option<String>,
        /// An emulator at this URL (its broker CA is read from it; default: AWS_ENDPOINT_URL);
        /// without either, the account's AWS IoT ATS endpoint through the SDK's usual chain.
        #[arg(long, conflicts_with = "host")]
        endpoint_url: Option<String>,
        /// The broker's host, instead of asking IoT for the account's ATS endpoint.
        #[arg(long)]
        host: Option<String>,
        /// The MQTT over TLS port.
        #[arg(long, default_value_t = 8883)]
        port: u16,
    },
}

#[derive(Debug, Subcommand)]
enum WebhookCommand {
    /// Sign a webhook with the secret and the current time; prints the Function URL request
    /// event (`cargo lambda invoke lifecycle --data-file`), or with --raw the body (the
    /// X-Men-Signature header on stderr, for curl).
    #[command(group(clap::ArgGroup::new("what").required(true).args(["body", "status", "decommissioned"])))]
    Sign {
        /// The webhook secret (default: WEBHOOK_SECRET; an argument lands in shell history).
        #[arg(long)]
        secret: Option<String>,
        /// A webhook body to sign; its `time` is set to now.
        #[arg(long)]
        body: Option<PathBuf>,
        /// The device id, for --status or --decommissioned.
        #[arg(long, required_unless_present = "body")]
        device: Option<String>,
        /// A device-status-changed webhook with this status (accepted, rejected, ...).
        #[arg(long)]
        status: Option<String>,
        /// A device-decommissioned webhook.
        #[arg(long)]
        decommissioned: bool,
        /// Print the signed body only (signature on stderr).
        #[arg(long)]
        raw: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ProfilesCommand {
    /// Validate a REGISTRATION_PROFILES document offline and print each CA's effective profile.
    Check {
        /// The JSON document.
        file: PathBuf,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Replay {
            function,
            json,
            endpoint_url,
            samples,
            files,
        } => replay::run(function, &files, samples, endpoint_url.as_deref(), json).await,
        Command::Seed {
            endpoint_url,
            samples,
            policy,
            bucket,
            ledger_table,
        } => seed::run(&endpoint_url, &samples, &policy, &bucket, &ledger_table).await,
        Command::Explain {
            endpoint_url,
            thing,
            certificate,
            json,
        } => match (thing, certificate) {
            (Some(thing), _) => {
                let target = jitr_registration::Target::Thing(thing);
                explain::run(endpoint_url.as_deref(), target, json).await
            }
            (None, Some(id)) => {
                let target = jitr_registration::Target::Certificate(id);
                explain::run(endpoint_url.as_deref(), target, json).await
            }
            (None, None) => Err("give --thing NAME or --certificate ID".into()),
        },
        Command::History {
            endpoint_url,
            thing,
            device_id,
            json,
        } => match (thing, device_id) {
            (Some(thing), _) => {
                let target = history::DeviceRef::Thing(thing);
                history::run(endpoint_url.as_deref(), &target, json).await
            }
            (None, Some(id)) => {
                let target = history::DeviceRef::DeviceId(id);
                history::run(endpoint_url.as_deref(), &target, json).await
            }
            (None, None) => Err("give --thing NAME or --device-id ID".into()),
        },
        Command::Device {
            command:
                DeviceCommand::Connect {
                    cert,
                    key,
                    ca,
                    client_id,
                    endpoint_url,
                    host,
                    port,
                },
        } => {
            // Like every AWS tool, an emulator named by AWS_ENDPOINT_URL (unless --host says where).
            let from_environment = || std::env::var("AWS_ENDPOINT_URL").ok();
            let endpoint_url = endpoint_url
                .or_else(|| host.is_none().then(from_environment).flatten())
                .filter(|url| !url.is_empty());
            device::run(device::Request {
                cert: &cert,
                key: &key,
                ca: &ca,
                client_id: client_id.as_deref(),
                endpoint_url: endpoint_url.as_deref(),
                host: host.as_deref(),
                port,
            })
            .await
        }
        Command::Doctor {
            stack,
            endpoint_url,
        } => doctor::run(&stack, endpoint_url.as_deref()).await,
        Command::Profiles {
            command: ProfilesCommand::Check { file },
        } => profiles::check(&file),
        Command::Ca {
            command:
                CaCommand::Register {
                    ca_cert,
                    ca_key,
                    endpoint_url,
                },
        } => ca::run(endpoint_url.as_deref(), &ca_cert, &ca_key).await,
        Command::Webhook {
            command:
                WebhookCommand::Sign {
                    secret,
                    body,
                    device,
                    status,
                    decommissioned,
                    raw,
                },
        } => {
            let body = match (body, device, status) {
                (Some(file), _, _) => Some(webhook::Body::File(file)),
                (None, Some(device), Some(status)) => {
                    Some(webhook::Body::Status { device, status })
                }
                (None, Some(device), None) if decommissioned => {
                    Some(webhook::Body::Decommissioned { device })
                }
                _ => None,
            };
            match body {
                Some(body) => webhook::run(secret, body, raw),
                None => Err(
                    "give --body FILE, or --device ID with --status S or --decommissioned".into(),
                ),
            }
        }
    };
    match result {
        Ok(()) | Err(output::Failure::BrokenPipe) => ExitCode::SUCCESS,
        Err(output::Failure::Message(message)) => {
            eprintln!("jitr: {message}");
            ExitCode::FAILURE
        }
        Err(output::Failure::EventsFailed { failed, total }) => {
            eprintln!("jitr: {failed} of {total} events failed");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Issue 20, item 5: `--help` explains every flag of every command.
    #[test]
    fn every_flag_has_help() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if !matches!(id, "help" | "version") && arg.get_help().is_none() {
                    missing.push(format!("{path} --{id}"));
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "jitr", &mut missing);
        assert!(missing.is_empty(), "flags without help: {missing:?}");
    }
}
