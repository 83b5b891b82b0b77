//! §2 Getting the Message Out (`wuserver.c`): the weather update server.
//!
//! A PUB socket bound to `tcp://*:5556` publishes random weather updates,
//! `"%05d %d %d"` = zipcode, temperature, relative humidity, as fast as it
//! can (no sleep: PUB drops what no subscriber wants, so this is cheap for
//! the network but keeps one core busy). Run `wuclient` beside it, or
//! `msreader`/`mspoller` (§4), or `wuproxy` (§7).
//!
//! Differs from the C: Ctrl-C/SIGTERM ends the loop and the program exits
//! with code 0; LINGER is 0 so a stuck subscriber cannot hold up the exit.

use zguide::{helpers, interrupt, Error};

fn main() -> Result<(), Error> {
    interrupt::catch_signals();
    let context = zmq::Context::new();
    let publisher = context.socket(zmq::PUB)?;
    // Updates are disposable: nothing queued is worth waiting for at exit.
    publisher.set_linger(0)?;
    publisher.bind("tcp://*:5556")?;

    while !interrupt::interrupted() {
        // Values that will fool the boss.
        let zipcode = helpers::randof(100_000);
        let temperature = helpers::randof(215) as i32 - 80;
        let relhumidity = helpers::randof(50) + 10;
        let update = format!("{zipcode:05} {temperature} {relhumidity}");
        match helpers::send_string(&publisher, &update) {
            Ok(()) => {}
            Err(Error::Interrupted) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
