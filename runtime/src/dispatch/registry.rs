//! The compile-time registry of named kernels, for spawned workers.

use std::collections::HashMap;
use std::sync::OnceLock;

use super::{Runner, Shape, runner};

/// One registered kernel: its stable name, its shape's type name (the
/// signature), and where its code and runner are in this process.
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    pub(crate) name: &'static str,
    pub(crate) signature: &'static str,
    pub(crate) kernel: usize,
    pub(crate) runner: Runner,
}

impl Entry {
    /// The entry of kernel `f` of shape `S`, named `name`.
    pub fn new<S: Shape>(name: &'static str, f: S::Fn) -> Entry {
        Entry {
            name,
            signature: std::any::type_name::<S>(),
            kernel: S::address(f),
            runner: runner::<S>,
        }
    }
}

/// What [`register_kernel!`](crate::register_kernel) submits: a function
/// that builds the entry (addresses are not constants, so the entry is
/// built at first use).
#[doc(hidden)]
pub struct Registration(pub fn() -> Entry);

inventory::collect!(Registration);

struct Registry {
    by_name: HashMap<(&'static str, &'static str), Entry>,
    by_address: HashMap<(usize, &'static str), Entry>,
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut by_name = HashMap::new();
        let mut by_address = HashMap::new();
        for registration in inventory::iter::<Registration> {
            let entry = (registration.0)();
            by_name.insert((entry.name, entry.signature), entry);
            by_address.insert((entry.kernel, entry.signature), entry);
        }
        Registry { by_name, by_address }
    })
}

/// The registered kernel at `kernel` with shape `signature`, if any.
pub(crate) fn by_address(kernel: usize, signature: &'static str) -> Option<Entry> {
    registry().by_address.get(&(kernel, signature)).copied()
}

/// The registered kernel `name` of shape `signature`.
///
/// # Errors
/// A message naming what is missing: no kernel of that name, or one of
/// another shape.
pub(crate) fn by_name(name: &str, signature: &str) -> Result<Entry, String> {
    let registry = registry();
    if let Some(entry) = registry
        .by_name
        .iter()
        .find(|((n, s), _)| *n == name && *s == signature)
        .map(|(_, e)| *e)
    {
        return Ok(entry);
    }
    if registry.by_name.keys().any(|(n, _)| *n == name) {
        return Err(format!(
            "the kernel {name} is registered in this executable with another signature than {signature}"
        ));
    }
    Err(format!("no kernel named {name} is registered in this executable"))
}
