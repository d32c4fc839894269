//! The X API: the recent search client and the replay source (`client`), the counts endpoint (`counts`), the
//! monthly read budget (`budget`), the usage the producer records (`usage`) and its cost control (`cost`).

pub mod budget;
pub mod client;
pub mod cost;
pub mod counts;
pub mod replay;
pub mod usage;
