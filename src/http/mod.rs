pub mod ctx;
pub mod forwarding;
pub mod head_checks;
pub mod identity;
pub mod proxy;
pub mod reply;
pub mod upstream;
