//! Reading structured resources out of an LLM's free text.

use crate::catalog::Resource;
use serde_json::Value;

/// Most resources kept from one answer.
const MAX_RESOURCES: usize = 20;

/// The resources in an answer: a JSON object `{"resources": [..]}` or a bare list, possibly
/// inside a Markdown code fence or after some prose.
pub fn parse_resources(text: &str) -> Result<Vec<Resource>, String> {
    let json = first_json(text).ok_or("the answer holds no JSON")?;
    let list = match &json {
        Value::Array(items) => items,
        Value::Object(map) => match map.get("resources") {
            Some(Value::Array(items)) => items,
            _ => return Err("the JSON answer has no 'resources' list".into()),
        },
        _ => return Err("the JSON answer is neither an object nor a list".into()),
    };
    let resources: Vec<Resource> = list.iter().take(MAX_RESOURCES).map(resource).collect::<Result<_, _>>()?;
    if resources.is_empty() {
        return Err("the answer lists no resources".into());
    }
    Ok(resources)
}

fn resource(item: &Value) -> Result<Resource, String> {
    let text = |key: &str| item.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
    let title = text("title").ok_or("a resource has no title")?;
    let url = text("url").ok_or("a resource has no url")?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!("'{url}' is not an http(s) URL"));
    }
    Ok(Resource { title: title.to_string(), url: url.to_string() })
}

/// The first JSON object or list that starts somewhere in `text`.
fn first_json(text: &str) -> Option<Value> {
    text.char_indices()
        .filter(|(_, c)| *c == '{' || *c == '[')
        .find_map(|(i, _)| serde_json::Deserializer::from_str(&text[i..]).into_iter::<Value>().next()?.ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_lists_and_fenced_answers_parse() {
        let r = parse_resources(r#"{"resources": [{"title": "A", "url": "https://a"}]}"#).unwrap();
        assert_eq!(r[0].title, "A");
        let fenced = "Sure!\n```json\n[{\"title\": \"B\", \"url\": \"http://b\"}]\n```\n";
        assert_eq!(parse_resources(fenced).unwrap()[0].url, "http://b");
    }

    #[test]
    fn garbage_and_incomplete_answers_are_refused() {
        assert!(parse_resources("I cannot help with that.").is_err());
        assert!(parse_resources(r#"{"resources": []}"#).is_err());
        assert!(parse_resources(r#"{"resources": [{"title": "A"}]}"#).is_err());
        assert!(parse_resources(r#"[{"title": "A", "url": "javascript:x"}]"#).is_err());
        assert!(parse_resources(r#"{"links": [1]}"#).is_err());
    }
}
