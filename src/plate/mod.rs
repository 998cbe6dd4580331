//! The plate path: detectors, recognisers, grammars, reader and tracker.

pub mod clp;
pub mod colour;
pub mod fast_alpr;
pub mod grammar;
pub mod lane;
pub mod lane_view;
pub mod reader;
pub mod text_det;
pub mod text_rec;
pub mod tracker;
