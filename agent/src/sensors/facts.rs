//! Static facts about the node for the Hello message: hostname, board model,
//! kernel, OS, boot time.

use std::path::Path;

use super::cpu::parse_btime;
use super::log_once::LogOnce;
use super::reader::Reader;
use crate::sysroot::SysRoot;

/// DMI product names firmware vendors leave unfilled on self-built PCs.
const DMI_PLACEHOLDERS: [&str; 6] = [
    "System Product Name",
    "To be filled by O.E.M.",
    "To Be Filled By O.E.M.",
    "Default string",
    "System manufacturer",
    "Not Applicable",
];

/// Hostname from /proc/sys/kernel/hostname.
pub fn hostname(root: &SysRoot, reader: &mut Reader, log: &LogOnce) -> String {
    reader
        .line(&root.join("/proc/sys/kernel/hostname"), log)
        .unwrap_or_default()
}

/// Kernel release from /proc/sys/kernel/osrelease.
pub fn kernel_version(root: &SysRoot, reader: &mut Reader, log: &LogOnce) -> String {
    reader
        .line(&root.join("/proc/sys/kernel/osrelease"), log)
        .unwrap_or_default()
}

/// Boot time from the `btime` line of /proc/stat; 0 if unknown.
pub fn boot_time(root: &SysRoot, reader: &mut Reader, log: &LogOnce) -> i64 {
    let path = root.join("/proc/stat");
    reader
        .parse(&path, log, "no btime line", parse_btime)
        .unwrap_or(0)
}

/// The board: /proc/device-tree/model on ARM (a NUL-terminated string),
/// else DMI vendor and product, falling back to the motherboard's names
/// when the product is a placeholder.
pub fn board_model(root: &SysRoot, reader: &mut Reader) -> String {
    if let Some(model) = optional_line(reader, &root.join("/proc/device-tree/model")) {
        return model;
    }
    let dmi = |reader: &mut Reader, name: &str| {
        optional_line(reader, &root.join("/sys/class/dmi/id").join(name))
            .filter(|v| !DMI_PLACEHOLDERS.contains(&v.as_str()))
    };
    let pair = |a: Option<String>, b: Option<String>| match (a, b) {
        (Some(a), Some(b)) => Some(format!("{a} {b}")),
        (None, Some(b)) => Some(b),
        _ => None,
    };
    let product = {
        let vendor = dmi(reader, "sys_vendor");
        let name = dmi(reader, "product_name");
        pair(vendor, name)
    };
    product
        .or_else(|| {
            let vendor = dmi(reader, "board_vendor");
            let name = dmi(reader, "board_name");
            pair(vendor, name)
        })
        .unwrap_or_default()
}

/// PRETTY_NAME from os-release(5): /etc/os-release, else
/// /usr/lib/os-release.
pub fn os_name(root: &SysRoot, reader: &mut Reader) -> String {
    for path in ["/etc/os-release", "/usr/lib/os-release"] {
        if let Ok(text) = reader.try_text(&root.join(path))
            && let Some(name) = parse_os_release(text)
        {
            return name;
        }
    }
    String::new()
}

/// PRETTY_NAME (or NAME) of an os-release file, unquoted.
pub fn parse_os_release(text: &str) -> Option<String> {
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(unquote)
            .filter(|v| !v.is_empty())
    };
    value("PRETTY_NAME").or_else(|| value("NAME"))
}

fn unquote(raw: &str) -> String {
    let raw = raw.trim();
    let inner = ['"', '\'']
        .iter()
        .find_map(|q| raw.strip_prefix(*q)?.strip_suffix(*q))
        .unwrap_or(raw);
    // Shell-style escapes os-release(5) allows inside double quotes.
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A file that may legitimately be absent (device-tree on x86, DMI on ARM):
/// no warning either way.
fn optional_line(reader: &mut Reader, path: &Path) -> Option<String> {
    let text = reader.try_text(path).ok()?;
    let line = text.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!line.is_empty()).then(|| line.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pretty_name_with_quotes_and_escapes() {
        let text = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(
            parse_os_release(text).unwrap(),
            "Debian GNU/Linux 12 (bookworm)"
        );
        assert_eq!(parse_os_release("NAME=Arch\n").unwrap(), "Arch");
        assert_eq!(
            parse_os_release("PRETTY_NAME='A \\\"b\\\"'\n").unwrap(),
            "A \"b\""
        );
        assert_eq!(parse_os_release("ID=x\n"), None);
    }
}
