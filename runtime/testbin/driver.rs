//! A coordinator for the runtime's integration tests.

fn main() {
    shmpar::init();
}
