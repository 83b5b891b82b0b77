//! §32 Binary Star Reactor (`bstarsrv2.c`): the Binary Star server rebuilt
//! on the reusable [`zguide::bstar::BinaryStar`] reactor (the `bstar` class).
//!
//! Same arguments, endpoints and behaviour as `bstarsrv`: `-p` (primary,
//! voter ROUTER `tcp://*:5001`, state on 5003, peer on 5004) or `-b` (backup,
//! `tcp://*:5002`, state on 5004, peer on 5003); anything else prints the C's
//! usage line `Usage: bstarsrvs { -p | -b }` (sic) and exits 0. The
//! application is one function, the echo service; Binary Star decides when
//! it may run. Log lines are `bstar.c`'s, with a `zclock_log` timestamp
//! (`… I: connected to backup (passive), ready as active`). Run beside it:
//! the other server (`bstarsrv2` or `bstarsrv`, they interoperate) and
//! `bstarcli`.
//!
//! Differs from the C: a fatal condition (dual actives or passives) exits
//! with code 1 (the C returns 0); echoes never block on a client that stopped
//! reading; malformed state messages are ignored (see the `bstar` module).

use std::process::ExitCode;

use zguide::bstar::{BinaryStar, Role};
use zguide::reactor::Reactor;
use zguide::{program, Error, Message};

/// Echo service: the accepted request goes straight back to its client.
fn echo(_: &mut Reactor<BinaryStar<()>>, bstar: &mut BinaryStar<()>) -> Result<(), Error> {
    let Some(voter) = bstar.voter_socket() else {
        return Ok(());
    };
    if let Some(msg) = Message::try_recv(voter)? {
        msg.send_or_drop(voter)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    // Arguments can be either of:
    //     -p  primary server, at tcp://localhost:5001
    //     -b  backup server, at tcp://localhost:5002
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (role, voter_at, local, remote) = match args.as_slice() {
        [flag] if flag == "-p" => {
            println!("I: Primary active, waiting for backup (passive)");
            (
                Role::Primary,
                "tcp://*:5001",
                "tcp://*:5003",
                "tcp://localhost:5004",
            )
        }
        [flag] if flag == "-b" => {
            println!("I: Backup passive, waiting for primary (active)");
            (
                Role::Backup,
                "tcp://*:5002",
                "tcp://*:5004",
                "tcp://localhost:5003",
            )
        }
        _ => {
            println!("Usage: bstarsrvs {{ -p | -b }}");
            return ExitCode::SUCCESS;
        }
    };
    program::run(|| {
        let context = zmq::Context::new();
        let mut bstar = BinaryStar::new(&context, role, local, remote, ())?;
        bstar.voter(voter_at, zmq::ROUTER, echo)?;
        bstar.start(&mut Reactor::new())
    })
}
