//! §S1 Version Reporting (`version.c`): prints the libzmq version this program
//! is linked against. Runs alone and exits.

fn main() {
    let (major, minor, patch) = zmq::version();
    println!("Current 0MQ version is {major}.{minor}.{patch}");
}
