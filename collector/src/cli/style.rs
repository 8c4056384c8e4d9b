//! Colour and column alignment for terminal output.
//!
//! Colour marks trouble only (red: act now, yellow: look soon), so a healthy
//! cluster prints plain text.

/// How serious a cell's value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Level {
    /// Nothing to see.
    #[default]
    Normal,
    /// Worth a look (yellow).
    Warning,
    /// Needs action (red).
    Critical,
}

const RED: &str = "\x1b[31m";
const YELLOW: &str = "\x1b[33m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// Whether ANSI colour is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// Emit ANSI escapes.
    pub color: bool,
}

impl Style {
    /// No escapes at all (pipes, files, NO_COLOR, --color never).
    pub const PLAIN: Self = Self { color: false };
    /// Escapes on (a terminal, or --color always).
    pub const COLOR: Self = Self { color: true };

    /// `text` coloured for `level`.
    pub fn paint(self, level: Level, text: &str) -> String {
        match (self.color, level) {
            (false, _) | (true, Level::Normal) => text.to_owned(),
            (true, Level::Warning) => format!("{YELLOW}{text}{RESET}"),
            (true, Level::Critical) => format!("{RED}{text}{RESET}"),
        }
    }

    /// `text` in bold (headings).
    pub fn bold(self, text: &str) -> String {
        if self.color {
            format!("{BOLD}{text}{RESET}")
        } else {
            text.to_owned()
        }
    }
}

/// Columns a string occupies on a terminal: ANSI escapes take none. Every
/// glyph this CLI prints (ASCII, °, braille, box drawing) is one column wide,
/// so counting chars outside escapes is exact for our own output.
pub fn display_width(text: &str) -> usize {
    let mut width = 0;
    let mut in_escape = false;
    for c in text.chars() {
        if in_escape {
            // CSI sequences end with a letter.
            if c.is_ascii_alphabetic() {
                in_escape = false;
            }
        } else if c == '\x1b' {
            in_escape = true;
        } else {
            width += 1;
        }
    }
    width
}

/// `text` cut to `max` columns with "…" (plain text only).
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Column alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text columns.
    Left,
    /// Numbers.
    Right,
}

/// A table whose cells may carry colour; aligned by display width.
#[derive(Debug)]
pub struct Table {
    headers: Vec<(String, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headings.
    pub fn new(headers: &[(&str, Align)]) -> Self {
        Self {
            headers: headers.iter().map(|(h, a)| ((*h).to_owned(), *a)).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row of already-styled cells.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Drops the column with this heading (for narrow terminals).
    pub fn remove_column(&mut self, header: &str) {
        if let Some(i) = self.headers.iter().position(|(h, _)| h == header) {
            self.headers.remove(i);
            for row in &mut self.rows {
                if i < row.len() {
                    row.remove(i);
                }
            }
        }
    }

    /// Columns the widest line takes.
    pub fn width(&self) -> usize {
        self.render(Style::PLAIN)
            .lines()
            .map(display_width)
            .max()
            .unwrap_or(0)
    }

    /// The table, two spaces between columns, no trailing spaces.
    pub fn render(&self, style: Style) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|(h, _)| h.len()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(display_width(cell));
                }
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.headers.iter().map(|(h, _)| h.clone()).collect();
        out.push_str(&style.bold(&self.line(&header, &widths)));
        out.push('\n');
        for row in &self.rows {
            out.push_str(&self.line(row, &widths));
            out.push('\n');
        }
        out
    }

    fn line(&self, cells: &[String], widths: &[usize]) -> String {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let width = widths.get(i).copied().unwrap_or(0);
            let pad = " ".repeat(width.saturating_sub(display_width(cell)));
            if i > 0 {
                line.push_str("  ");
            }
            match self.headers.get(i).map(|(_, a)| *a) {
                Some(Align::Right) => {
                    line.push_str(&pad);
                    line.push_str(cell);
                }
                _ => {
                    line.push_str(cell);
                    line.push_str(&pad);
                }
            }
        }
        line.trim_end().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coloured_cells_align_like_plain_ones() {
        let mut t = Table::new(&[("NAME", Align::Left), ("TEMP", Align::Right)]);
        t.row(vec![
            "pi1".into(),
            Style::COLOR.paint(Level::Critical, "81.0 °C"),
        ]);
        t.row(vec!["banana".into(), "45.0 °C".into()]);
        let out = t.render(Style::COLOR);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(display_width(lines[1]), display_width(lines[2]));
        assert!(lines[1].contains("\x1b[31m81.0 °C\x1b[0m"));
        assert_eq!(
            Table::new(&[("A", Align::Left)]).render(Style::PLAIN),
            "A\n"
        );
    }

    #[test]
    fn plain_style_writes_no_escapes() {
        assert_eq!(Style::PLAIN.paint(Level::Critical, "offline"), "offline");
        assert_eq!(
            truncate("Raspberry Pi 4 Model B Rev 1.4", 12),
            "Raspberry P…"
        );
    }
}
