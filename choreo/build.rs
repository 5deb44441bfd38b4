//! The agent folders are built into the Lambda binaries (`src/agents.rs`): rebuild when they
//! change.
fn main() {
    println!("cargo:rerun-if-changed=../consumers/agents");
}
