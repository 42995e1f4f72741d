//! The morphologizer's labels (`morphologizer/cfg`, JSON): `labels_morph` keys in file order,
//! each like `Gender=Fem|Number=Sing|POS=DET`; we keep the POS part.

use std::fmt;
use std::path::Path;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use crate::msgpack::bad;
use crate::FrenchError;

/// The keys of a JSON object, in file order.
struct OrderedKeys(Vec<String>);

impl<'de> Deserialize<'de> for OrderedKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> Visitor<'de> for Keys {
            type Value = OrderedKeys;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedKeys, A::Error> {
                let mut keys = Vec::new();
                while let Some((key, IgnoredAny)) = map.next_entry::<String, IgnoredAny>()? {
                    keys.push(key);
                }
                Ok(OrderedKeys(keys))
            }
        }
        deserializer.deserialize_map(Keys)
    }
}

#[derive(Deserialize)]
struct Cfg {
    labels_morph: OrderedKeys,
}

/// The UPOS of each label, in the model's output order ("" when a label has no POS).
pub fn read_pos(bytes: &[u8], path: &Path) -> Result<Vec<String>, FrenchError> {
    let cfg: Cfg = serde_json::from_slice(bytes).map_err(|e| bad(path, e.to_string()))?;
    Ok(cfg.labels_morph.0.iter().map(|l| pos_of(l)).collect())
}

fn pos_of(label: &str) -> String {
    label.split('|').find_map(|kv| kv.strip_prefix("POS=")).unwrap_or("").to_string()
}
