//! The pure worker modules under fuzz, compiled from the workers crate's own files so that the fuzz build needs
//! none of its I/O dependencies. `transform` refers to `crate::tweet`, which these `mod` lines provide.
#![forbid(unsafe_code)]
#![allow(dead_code)]

#[path = "../../workers/src/tweet.rs"]
pub mod tweet;

#[path = "../../workers/src/transform/mod.rs"]
pub mod transform;
