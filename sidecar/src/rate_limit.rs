//! Request rates per caller, and per caller and tool: GCRA token buckets (`governor`) in this
//! replica's memory. Replicas share nothing, so N replicas allow N times the configured rate;
//! a cluster-wide limit belongs to an engine built for it, in front of the gateway.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use mcp_gateway_contract::config::{RateLimit, RateLimits};
use wildmatch::WildMatch;

use crate::dotnet_case;

/// Which limit refused a request, and when to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `caller`, or the tool patterns of the rule, as written in the config (a metric label).
    pub limit: String,
    pub retry_after: Duration,
}

/// Every configured limit.
pub struct RateLimiter {
    per_caller: Option<DefaultKeyedRateLimiter<String>>,
    tools: Vec<ToolLimit>,
    clock: DefaultClock,
    /// Checks since the idle buckets were last dropped.
    checks: AtomicU32,
}

struct ToolLimit {
    patterns: Vec<WildMatch>,
    label: String,
    limiter: DefaultKeyedRateLimiter<String>,
}

/// How often (in checks) buckets that are full again are dropped, so memory follows the
/// callers active in the last minutes, not every caller ever seen.
const SWEEP_EVERY: u32 = 4096;

fn quota(limit: &RateLimit) -> Quota {
    let rate = NonZeroU32::new(limit.requests_per_minute).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(limit.burst_or_default()).unwrap_or(NonZeroU32::MIN);
    Quota::per_minute(rate).allow_burst(burst)
}

impl RateLimiter {
    pub fn new(config: &RateLimits) -> Self {
        Self {
            per_caller: config
                .per_caller
                .as_ref()
                .map(|l| DefaultKeyedRateLimiter::keyed(quota(l))),
            tools: config
                .tools
                .iter()
                .map(|t| ToolLimit {
                    patterns: t
                        .tools
                        .iter()
                        .map(|p| WildMatch::new(&dotnet_case::fold(p)))
                        .collect(),
                    label: t.tools.join(","),
                    limiter: DefaultKeyedRateLimiter::keyed(quota(&t.limit())),
                })
                .collect(),
            clock: DefaultClock::default(),
            checks: AtomicU32::new(0),
        }
    }

    /// Counts one request of `caller`.
    pub fn check_caller(&self, caller: &str) -> Result<(), Refusal> {
        self.sweep_now_and_then();
        let Some(limiter) = &self.per_caller else {
            return Ok(());
        };
        limiter
            .check_key(&caller.to_string())
            .map_err(|not_until| Refusal {
                limit: "caller".into(),
                retry_after: not_until.wait_time_from(self.clock.now()),
            })
    }

    /// Whether any tool has a limit (else request bodies need not be read for it).
    pub fn limits_tools(&self) -> bool {
        !self.tools.is_empty()
    }

    /// Counts one `tools/call` of `tool` by `caller`, against the first rule naming the tool.
    pub fn check_tool(&self, caller: &str, tool: &str) -> Result<(), Refusal> {
        let tool = dotnet_case::fold(tool);
        let tool = tool.as_str();
        let Some(rule) = self
            .tools
            .iter()
            .find(|t| t.patterns.iter().any(|p| p.matches(tool)))
        else {
            return Ok(());
        };
        rule.limiter
            .check_key(&caller.to_string())
            .map_err(|not_until| Refusal {
                limit: rule.label.clone(),
                retry_after: not_until.wait_time_from(self.clock.now()),
            })
    }

    fn sweep_now_and_then(&self) {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY != SWEEP_EVERY - 1 {
            return;
        }
        let limiters = self
            .per_caller
            .iter()
            .chain(self.tools.iter().map(|t| &t.limiter));
        for limiter in limiters {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// `Retry-After` in whole seconds, rounded up: a client that waits that long is let in.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(yaml: &str) -> RateLimiter {
        RateLimiter::new(&serde_yaml::from_str(yaml).unwrap())
    }

    #[test]
    fn a_caller_gets_its_burst_then_waits_and_others_are_not_affected() {
        let l = limiter("perCaller: {requestsPerMinute: 60, burst: 3}");
        for _ in 0..3 {
            assert_eq!(l.check_caller("a"), Ok(()));
        }
        let refusal = l.check_caller("a").unwrap_err();
        assert_eq!(refusal.limit, "caller");
        // One request a second: the next is at most a second away.
        assert!(refusal.retry_after <= Duration::from_secs(1), "{refusal:?}");
        assert_eq!(retry_after_seconds(refusal.retry_after), 1);
        assert_eq!(l.check_caller("b"), Ok(()));
    }

    #[test]
    fn tool_limits_count_per_caller_and_rule() {
        let l =
            limiter("tools:\n- tools: ['search_*', lookup]\n  requestsPerMinute: 1\n  burst: 2");
        assert_eq!(l.check_tool("a", "search_docs"), Ok(()));
        assert_eq!(l.check_tool("a", "lookup"), Ok(()));
        // Another spelling is the same tool to the host, and counts.
        let refusal = l.check_tool("a", "SEARCH_web").unwrap_err();
        assert_eq!(refusal.limit, "search_*,lookup");
        assert!(refusal.retry_after > Duration::from_secs(50), "{refusal:?}");
        assert_eq!(l.check_tool("b", "search_web"), Ok(()));
        // Tools no rule names, and callers without a per-caller limit, are not counted.
        for _ in 0..10 {
            assert_eq!(l.check_tool("a", "echo"), Ok(()));
            assert_eq!(l.check_caller("a"), Ok(()));
        }
    }

    #[test]
    fn the_default_burst_is_a_tenth_of_a_minute() {
        let l = limiter("perCaller: {requestsPerMinute: 600}");
        assert!((0..60).all(|_| l.check_caller("a").is_ok()));
        assert!(l.check_caller("a").is_err());
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_secs(2)), 2);
    }
}
