//! Tooling around the product, not part of a running box: the rendered demo clip and datasets
//! (`demo`, `demo_dataset`, the demo's faces `demo_faces`) and plate accuracy measurement (`eval`). `gatewatch demo`, `eval`,
//! the benches and the tests use them; `run` never does.

pub mod demo;
pub mod demo_dataset;
pub mod demo_faces;
pub mod eval;
