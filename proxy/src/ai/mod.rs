//! The AI gateway: forwarding to OpenAI, Anthropic and DeepSeek with the user's key
//! ([`forward`]), only to the endpoints and with the headers [`endpoints`] allows; the keys as the
//! proxy holds them ([`credentials`]); what each call used and cost ([`usage`], [`pricing`]); the
//! agents' AI budgets, reserved before a call and settled after it ([`budget`]); and the metering
//! of every reply to its end, even when the agent leaves first ([`meter`]).

pub mod budget;
pub mod credentials;
pub mod endpoints;
pub mod forward;
pub mod meter;
pub mod pricing;
pub mod usage;
