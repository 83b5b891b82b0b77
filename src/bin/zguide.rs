//! `zguide`: runs the guide's examples side by side (`zguide run hello`) and
//! lists what it can run (`zguide list`). Not a guide program: the runner
//! itself lives in the library, `zguide::runner`; `zguide --help` tells more.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(zguide::runner::main(args));
}
