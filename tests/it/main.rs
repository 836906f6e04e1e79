#![allow(
    unreachable_pub,
    clippy::too_many_lines,
    reason = "test harness items and long end-to-end scenarios"
)]
#![allow(
    clippy::disallowed_methods,
    reason = "tests build and read the temporary root directly"
)]
//! Integration tests: the real `berth` binary against temporary roots and a private dockerd.

mod harness;

mod bad_input;
mod bare_host;
mod cli;
mod containers;
mod conventions;
mod daemon;
mod dind;
mod doctor;
mod engine_changes;
mod engine_errors;
mod fault_proxy;
mod fault_tools;
mod faults;
mod fleet;
mod fleet_docs;
mod git_server;
mod gitlab_server;
mod host_files;
mod hostile_docker;
mod hostile_files;
mod hostile_profile;
mod hygiene;
mod init;
mod live_restore;
mod module_graph;
mod operations;
mod orphans;
mod packaging;
mod plans;
mod profiles;
mod pull;
mod registry_mirrors;
mod runner;
mod runtime;
mod sizing;
mod source;
mod upgrade;
mod watch;
