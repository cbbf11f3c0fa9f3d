//! Configuration: the typed tree (`types`), its value languages (`values`),
//! loading from file and environment (`load`) and validation (`validate`).
//! A bad config never starts the gateway half-way: loading and validation
//! report every problem with its key path and the file it came from.

pub mod ldap_filter;
mod load;
mod secrets;
mod store_url;
mod types;
mod upstream_env;
mod validate;
pub mod values;

pub use load::{ConfigError, LoadedConfig, load, load_file, load_from_figment};
pub use store_url::{Cluster, Credentials, Sentinel, StoreUrl, Topology};
pub use types::*;
pub use validate::{Problem, validate};
pub use values::{CaFile, HeaderNameSetting, MethodSetting, PathPattern, RateSpec, Secret};
