//! Tooling around the product, not part of a running box: the rendered demo clip, its faces and
//! datasets (`demo`, `demo_faces`, `demo_dataset`) and plate accuracy measurement (`eval`).
//! `gatewatch demo`, `eval`, the benches and the tests use them; `run` never does.

pub mod demo;
pub mod demo_dataset;
pub mod demo_faces;
pub mod eval;
