//! `butterfly`: command line client of butterflyd (see butterfly_api::cli).

fn main() {
    std::process::exit(butterfly_api::cli::run(std::env::args().collect()));
}
