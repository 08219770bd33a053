//! Names compared as the Functions host compares them. The host is .NET: its MCP tool
//! registry and the C# MCP SDK's JSON property names ignore case (`OrdinalIgnoreCase`, which
//! maps each UTF-16 unit to its invariant uppercase), so `DELETE_FILE` calls `delete_file`
//! and `"Name"` is read as `"name"`. Every decision the gateway takes on a name takes it on
//! the folded name, or a client could pick a spelling the rules do not match.

/// `name` with each character replaced by its uppercase when that is a single character
/// (the simple case mapping .NET applies; `ß` stays `ß`, `ſ` becomes `S`).
pub fn fold(name: &str) -> String {
    name.chars()
        .map(|c| {
            let mut upper = c.to_uppercase();
            match (upper.next(), upper.next()) {
                (Some(u), None) => u,
                _ => c,
            }
        })
        .collect()
}

/// Whether `a` and `b` are the same name to the host.
pub fn same(a: &str, b: &str) -> bool {
    fold(a) == fold(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_as_dotnet_ordinal_ignore_case() {
        assert_eq!(fold("delete_File"), "DELETE_FILE");
        assert!(same("paramſ", "params"));
        assert!(same("Name", "name"));
        // Full case mappings that change the length are not .NET's.
        assert_eq!(fold("straße"), "STRAßE");
        assert!(!same("ss", "ß"));
    }
}
