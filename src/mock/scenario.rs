//! Scripted scenarios (`MockConfig::scenarios`, on in the demo): within the
//! first half minute of serving, the emulated tenant produces the three
//! situations Tines's own monitoring advice names, so that detections have
//! something to find:
//!
//! - at 8 s, one user deletes seven credentials in seven seconds;
//! - at 16 s, a user edits another to be tenant owner and admin;
//! - at 22 s, a user who works from home logs in from Brazil ([`SCENARIO_COUNTRY`]).
//!
//! Like live events, scenarios stop once live events are paused.

use std::sync::Arc;
use std::time::Duration;

use super::rng::SplitMix64;
use super::server::Shared;
use super::tenant::ip_in;

/// `Event::script` of a `UserEdit` granting tenant owner and admin rights.
pub(crate) const SCRIPT_OWNER_GRANT: u8 = 1;

/// Where the scripted foreign login comes from (outside the demo's allowlist).
pub const SCENARIO_COUNTRY: &str = "BR";

/// When each scripted situation happens, after the emulator starts.
pub const SCENARIO_TIMES: [Duration; 3] = [Duration::from_secs(8), Duration::from_secs(16), Duration::from_secs(22)];

/// How many credentials the scripted user deletes.
pub const SCENARIO_DELETIONS: usize = 7;

pub(crate) async fn run(sh: Arc<Shared>) {
    let start = tokio::time::Instant::now();
    let mut rng = SplitMix64::new(sh.generator().seed ^ 0x5CE4_A410);
    let humans: Vec<usize> =
        sh.generator().tenant.users.iter().enumerate().filter(|(_, u)| !u.service).map(|(i, _)| i).collect();
    let pick = |rng: &mut SplitMix64| humans[rng.index(humans.len())];
    let deleter = pick(&mut rng);
    tokio::time::sleep_until(start + SCENARIO_TIMES[0]).await;
    for _ in 0..SCENARIO_DELETIONS {
        if !sh.live_on() {
            return;
        }
        sh.push_scripted("CredentialDestruction", deleter, None, 0);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::sleep_until(start + SCENARIO_TIMES[1]).await;
    if !sh.live_on() {
        return;
    }
    sh.push_scripted("UserEdit", pick(&mut rng), None, SCRIPT_OWNER_GRANT);
    tokio::time::sleep_until(start + SCENARIO_TIMES[2]).await;
    let users = &sh.generator().tenant.users;
    let away: Vec<usize> = humans.iter().copied().filter(|&u| users[u].home != SCENARIO_COUNTRY).collect();
    let Some(&traveller) = away.get(rng.index(away.len().max(1))) else { return };
    let ip = ip_in(SCENARIO_COUNTRY, &mut rng);
    if !sh.live_on() {
        return;
    }
    sh.push_scripted("Login", traveller, Some(ip), 0);
}
