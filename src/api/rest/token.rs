//! `auth/token/` endpoints (reference §10).

use super::{Reply, Request, RestState};

pub(super) async fn handle(_state: &RestState, _request: Request) -> Reply {
    Reply::unsupported_path()
}
