//! The Gatehouse edge worker. Gatekeeping arrives with its own issue; this crate pins the worker
//! toolchain (worker, wasm-bindgen) and proves the shared core builds for wasm32 inside it.

pub use gatehouse_shared::ErrorCode;
