//! brokerctl: the study broker's management tool (study part 2,
//! `../shared/spec/etude.md` §4). It asks the broker's own `mmi.*` services
//! over SBP/1 (the table "Management services" in
//! [`zguide::broker`]'s docs) and prints the answers for people.
//!
//! | command | asks | prints |
//! |---|---|---|
//! | `services` | `mmi.services` | the broker's figures, then one row per service: `ENVIRONMENT SERVICE WORKERS IDLE QUEUED REQUESTS REPLIES FAILURES RATE/S`, then one line per peer broker: `peer ENDPOINT alive\|silent services=N outstanding=N forwarded=N` (`--json`: the document as it came) |
//! | `service NAME` | `mmi.service` | `NAME 200` (it has a worker) or `NAME 404` |
//! | `register NAME ENDPOINT` | `mmi.register` | `registered NAME at ENDPOINT` |
//! | `lookup NAME` | `mmi.lookup` | the endpoint |
//! | `unregister NAME` | `mmi.unregister` | `unregistered NAME` |
//!
//! `--env` scopes the names, as for any SBP/1 request. Exit code 0 when the
//! answer is 200, 1 for any other answer (its code on stderr), 2 when the
//! broker does not answer within `--timeout-ms` × `--retries` attempts (the
//! wait doubling per attempt): `E: no answer from broker at <endpoint>`.
//!
//! Run beside it: `broker`. Examples:
//!
//! ```text
//! brokerctl services
//! brokerctl --env test service echo
//! brokerctl register files tcp://10.0.0.7:6000 && brokerctl lookup files
//! brokerctl --connect tcp://broker:5555 --timeout-ms 500 services --json
//! ```

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use zguide::broker::client::{load_curve, Client, ClientOptions, RequestOptions};
use zguide::broker::protocol::Reply;
use zguide::message::show;
use zguide::{helpers, interrupt, Error};

/// Asks the study broker's management services (mmi.*) and prints the answers.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Command,
    /// The broker's endpoint.
    #[arg(long, global = true, default_value = zguide::broker::DEFAULT_CONNECT)]
    connect: String,
    /// The environment that scopes the names.
    #[arg(long = "env", global = true)]
    environment: Option<String>,
    /// Milliseconds to wait for the answer (doubling per attempt).
    #[arg(long, global = true, default_value_t = 2500)]
    timeout_ms: u64,
    /// Attempts in all before giving up (exit code 2).
    #[arg(long, global = true, default_value_t = 1)]
    retries: u32,
    /// CURVE: the broker's public key file.
    #[arg(long, global = true, requires = "curve_keys")]
    curve_server_key: Option<std::path::PathBuf>,
    /// CURVE: this tool's key pair (the `_secret` file made by curvekeys).
    #[arg(long, global = true, requires = "curve_server_key")]
    curve_keys: Option<std::path::PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Every service with its workers, queue and counts, and the broker's figures.
    Services {
        /// Print the JSON document as the broker sent it.
        #[arg(long)]
        json: bool,
    },
    /// Whether NAME has a worker: prints `NAME 200` or `NAME 404`.
    Service { name: String },
    /// Registers NAME as ENDPOINT in the broker's name service.
    Register { name: String, endpoint: String },
    /// Prints the endpoint registered as NAME (exit code 1 if none).
    Lookup { name: String },
    /// Removes NAME from the name service.
    Unregister { name: String },
}

/// How the tool ends.
enum Outcome {
    Ok,
    /// Any answer but 200 (already reported).
    NotOk,
}

fn main() -> ExitCode {
    let args = Args::parse();
    helpers::init_log("warn");
    interrupt::catch_signals();
    match run(&args) {
        Ok(Outcome::Ok) | Err(Error::Interrupted) => ExitCode::SUCCESS,
        Ok(Outcome::NotOk) => ExitCode::FAILURE,
        Err(Error::Timeout) => {
            eprintln!("E: no answer from broker at {}", args.connect);
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("E: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<Outcome, Error> {
    let options = ClientOptions {
        endpoint: args.connect.clone(),
        environment: args.environment.clone(),
        timeout: Duration::from_millis(args.timeout_ms.max(1)),
        retries: args.retries.max(1),
        curve: load_curve(args.curve_keys.as_deref(), args.curve_server_key.as_deref())?,
        ..ClientOptions::default()
    };
    let mut client = Client::new(options)?;
    let mut ask = |service: &str, body: &[&str]| -> Result<(u16, Reply), Error> {
        let body = body.iter().map(|frame| frame.as_bytes().to_vec()).collect();
        let reply = client.request(service, body, &RequestOptions::default())?;
        Ok((code_of(&reply), reply))
    };
    match &args.command {
        Command::Services { json } => {
            let (code, reply) = ask("mmi.services", &[])?;
            if code != 200 {
                return Ok(not_ok("mmi.services", code, &reply));
            }
            let document = reply.body.get(1).cloned().unwrap_or_default();
            if *json {
                println!("{}", String::from_utf8_lossy(&document));
                return Ok(Outcome::Ok);
            }
            match serde_json::from_slice::<serde_json::Value>(&document) {
                Ok(value) => {
                    print!("{}", services_table(&value));
                    Ok(Outcome::Ok)
                }
                Err(e) => {
                    eprintln!(
                        "E: the mmi.services answer is not JSON ({e}): {}",
                        show(&document)
                    );
                    Ok(Outcome::NotOk)
                }
            }
        }
        Command::Service { name } => {
            let (code, _) = ask("mmi.service", &[name])?;
            println!("{name} {code:03}");
            Ok(if code == 200 {
                Outcome::Ok
            } else {
                Outcome::NotOk
            })
        }
        Command::Register { name, endpoint } => {
            let (code, reply) = ask("mmi.register", &[name, endpoint])?;
            if code != 200 {
                return Ok(not_ok("mmi.register", code, &reply));
            }
            println!("registered {name} at {endpoint}");
            Ok(Outcome::Ok)
        }
        Command::Lookup { name } => {
            let (code, reply) = ask("mmi.lookup", &[name])?;
            match (code, reply.body.get(1)) {
                (200, Some(endpoint)) => {
                    println!("{}", show(endpoint));
                    Ok(Outcome::Ok)
                }
                (404, _) => {
                    eprintln!("E: {name} is not registered");
                    Ok(Outcome::NotOk)
                }
                _ => Ok(not_ok("mmi.lookup", code, &reply)),
            }
        }
        Command::Unregister { name } => {
            let (code, reply) = ask("mmi.unregister", &[name])?;
            if code != 200 {
                return Ok(not_ok("mmi.unregister", code, &reply));
            }
            println!("unregistered {name}");
            Ok(Outcome::Ok)
        }
    }
}

/// An `mmi.*` answer's code: its first body frame (RFC 8), else the status.
fn code_of(reply: &Reply) -> u16 {
    match reply.body.first() {
        Some(frame) if frame.len() == 3 && frame.iter().all(u8::is_ascii_digit) => {
            String::from_utf8_lossy(frame)
                .parse()
                .unwrap_or(reply.status.0)
        }
        _ => reply.status.0,
    }
}

fn not_ok(service: &str, code: u16, reply: &Reply) -> Outcome {
    let reason = reply.properties.reason.as_deref().unwrap_or("");
    eprintln!(
        "E: {service} answered {code:03} {}",
        show(reason.as_bytes())
    );
    Outcome::NotOk
}

/// The broker's figures on one line, then the services as an aligned table.
fn services_table(document: &serde_json::Value) -> String {
    use serde_json::Value;
    let mut out = String::new();
    if let Some(Value::Object(figures)) = document.get("broker") {
        let figures: Vec<String> = figures
            .iter()
            .map(|(name, value)| format!("{}={}", name, cell(Some(value), 2)))
            .collect();
        out.push_str(&format!("broker: {}\n", figures.join(" ")));
    }
    let columns = [
        ("ENVIRONMENT", "environment"),
        ("SERVICE", "service"),
        ("WORKERS", "workers"),
        ("IDLE", "idle"),
        ("QUEUED", "queued"),
        ("REQUESTS", "requests"),
        ("REPLIES", "replies"),
        ("FAILURES", "failures"),
        ("RATE/S", "rate"),
    ];
    let mut rows: Vec<Vec<String>> = vec![columns.iter().map(|c| c.0.to_string()).collect()];
    let services = document.get("services").and_then(Value::as_array);
    for service in services.into_iter().flatten() {
        rows.push(
            columns
                .iter()
                .map(|(_, key)| cell(service.get(key), 1))
                .collect(),
        );
    }
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(text, width)| format!("{text:width$}"))
            .collect();
        out.push_str(cells.join(" ").trim_end());
        out.push('\n');
    }
    // Peering: one line per peer broker.
    let peers = document.get("peers").and_then(Value::as_array);
    for peer in peers.into_iter().flatten() {
        let alive = peer.get("alive").and_then(Value::as_bool).unwrap_or(false);
        out.push_str(&format!(
            "peer {} {} services={} outstanding={} forwarded={}\n",
            cell(peer.get("endpoint"), 0),
            if alive { "alive" } else { "silent" },
            cell(peer.get("services"), 0),
            cell(peer.get("outstanding"), 0),
            cell(peer.get("forwarded"), 0),
        ));
    }
    out
}

/// One value for the table: text escaped and bounded, floats with
/// `decimals` digits, anything else as compact JSON (bounded).
fn cell(value: Option<&serde_json::Value>, decimals: usize) -> String {
    use serde_json::Value;
    match value {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(text)) => show(text.as_bytes()),
        Some(Value::Number(n)) if n.is_f64() => {
            format!("{:.decimals$}", n.as_f64().unwrap_or(0.0))
        }
        Some(other) => show(other.to_string().as_bytes()),
    }
}
