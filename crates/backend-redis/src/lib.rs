//! Switchboard cluster backend on Redis (being written).
