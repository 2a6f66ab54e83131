//! The integration tests: one binary (one link of Pingora instead of one per area), a module
//! per area. Each starts the real binaries on free 127.0.0.1 ports; `common` has the helpers.

mod common;

mod balancer;
mod browser;
mod container;
mod decisions;
mod hostile;
mod keys;
mod kubernetes;
mod layout;
mod loadtest;
mod operations;
mod packaging;
mod promises;
mod properties;
mod proxy;
mod resolve;
mod supervisor;
mod upgrade;
mod upstream_faults;
