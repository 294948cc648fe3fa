//! The WebSocket protocol, frame by frame: auth in its three forms, every request frame,
//! resume, direct messages across devices, rate limits, and bad input of every kind.
//! One file per concern below; they share this module's imports.

use crate::common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

mod bad_input;
mod connection;
mod publishing;
mod resume;
mod subscriptions;
