//! Before the soak: users and their tokens from the server API, public rooms, and which
//! client is in which room. Everything is retried briefly, since a node may still be settling.

use serde_json::{Value, json};
use std::time::Duration;

/// One soak user: its id and token.
#[derive(Debug, Clone)]
pub struct User {
    /// The user id (`soak-<run>-<i>`).
    pub user_id: String,
    /// A bearer token from the server API.
    pub token: String,
}

/// The room plan: `rooms` public rooms, client `i` in `members_of(i)`.
#[derive(Debug, Clone)]
pub struct Plan {
    /// `room:<id>` of every room.
    pub rooms: Vec<String>,
    /// Rooms each client is in (indexes into `rooms`).
    pub rooms_per_client: usize,
}

impl Plan {
    /// How many rooms give `clients × per_client` memberships about `size` members each.
    pub fn room_count(clients: usize, per_client: usize, size: usize) -> usize {
        (clients * per_client).div_ceil(size.max(1)).max(per_client)
    }

    /// Indexes of the rooms client `i` is in: consecutive slots, so every room gets the same
    /// number of members (give or take one) and a client's rooms are distinct.
    pub fn rooms_of(&self, i: usize) -> Vec<usize> {
        (0..self.rooms_per_client)
            .map(|k| (i * self.rooms_per_client + k) % self.rooms.len())
            .collect()
    }

    /// The clients (of `clients`) in room `r`.
    pub fn members_of(&self, r: usize, clients: usize) -> Vec<usize> {
        (0..clients)
            .filter(|&i| self.rooms_of(i).contains(&r))
            .collect()
    }
}

/// HTTP calls to the nodes' APIs with the server API key.
pub struct Api {
    http: reqwest::Client,
    key: String,
}

impl Api {
    /// An API caller with `key` as `X-Api-Key`.
    pub fn new(key: &str) -> Api {
        Api {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            key: key.to_owned(),
        }
    }

    /// POSTs `body` to `url` (with the API key, and `token` as bearer if given) until it is
    /// answered 2xx, for up to 20 attempts; the answer's JSON.
    async fn post(&self, url: &str, token: Option<&str>, body: Value) -> Result<Value, String> {
        let mut last = String::new();
        for _ in 0..20 {
            let mut req = self
                .http
                .post(url)
                .header("x-api-key", &self.key)
                .json(&body);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            match req.send().await {
                Ok(r) if r.status().is_success() => {
                    return r.json().await.map_err(|e| format!("{url}: {e}"));
                }
                Ok(r) => {
                    last = format!(
                        "{url}: {} {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    )
                }
                Err(e) => last = format!("{url}: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(last)
    }

    /// A token for the server-API user `user_id` (created on first use), from `base`.
    pub async fn user(&self, base: &str, user_id: &str) -> Result<User, String> {
        let v = self
            .post(
                &format!("{base}/v1/server/users/{user_id}/tokens"),
                None,
                json!({}),
            )
            .await?;
        let token = v["token"]
            .as_str()
            .ok_or_else(|| format!("no token in {v}"))?;
        Ok(User {
            user_id: user_id.to_owned(),
            token: token.to_owned(),
        })
    }

    /// Creates a public room as `owner`; its `room:<id>`.
    pub async fn room(&self, base: &str, owner: &User, name: &str) -> Result<String, String> {
        let v = self
            .post(
                &format!("{base}/v1/rooms"),
                Some(&owner.token),
                json!({"name": name, "visibility": "public"}),
            )
            .await?;
        let id = v["room_id"]
            .as_str()
            .ok_or_else(|| format!("no room_id in {v}"))?;
        Ok(format!("room:{id}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_are_filled_evenly_and_a_clients_rooms_are_distinct() {
        let rooms = Plan::room_count(1000, 2, 20);
        assert_eq!(rooms, 100);
        let plan = Plan {
            rooms: (0..rooms).map(|r| format!("room:{r}")).collect(),
            rooms_per_client: 2,
        };
        for r in 0..rooms {
            assert_eq!(plan.members_of(r, 1000).len(), 20);
        }
        let mine = plan.rooms_of(7);
        assert_eq!(mine.len(), 2);
        assert_ne!(mine[0], mine[1]);
        // Few clients: still as many rooms as a client is in.
        assert_eq!(Plan::room_count(3, 2, 20), 2);
    }
}
