//! `butterfly`: command line client of butterflyd (see the butterfly_cli crate).

fn main() {
    std::process::exit(butterfly_cli::run(std::env::args().collect()));
}
