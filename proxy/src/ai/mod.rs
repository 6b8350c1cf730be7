//! The AI gateway: forwarding to OpenAI, Anthropic and DeepSeek with the user's key
//! ([`forward`]), the keys as the proxy holds them ([`credentials`]), and what each call used and
//! cost ([`usage`], [`pricing`]).

pub mod credentials;
pub mod forward;
pub mod pricing;
pub mod usage;
