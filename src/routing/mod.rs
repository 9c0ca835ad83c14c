//! Where a job goes: the region of its destination, and the provider that serves it.

pub mod actor;
pub mod choose;
pub mod region;
pub mod table;

pub use actor::{Deliver, DeliveryOutcome, RouterActor};
pub use region::RegionTable;
