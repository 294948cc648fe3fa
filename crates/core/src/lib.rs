//! Switchboard's core: the backend interfaces, the fan-out hub, transport-neutral sessions,
//! and the rules of sequencing and resume. It knows nothing of where data lives (see
//! [`backend`]) nor of how bytes reach a client (see `transport`).

pub mod backend;
