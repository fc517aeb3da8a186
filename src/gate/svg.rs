//! A minimal SVG line/bar chart writer for the gate report page: axes with round ticks, lines,
//! areas, bars, reference lines and markers. No dependencies, no scripts; coordinates are printed
//! with one decimal so the same data always gives the same bytes.

use std::fmt::Write;

/// Escapes text for HTML/SVG content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Up to about `n` round tick values covering `[lo, hi]` (steps of 1, 2 or 5 × 10^k).
pub fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if hi <= lo || !lo.is_finite() || !hi.is_finite() {
        return vec![lo];
    }
    let raw = (hi - lo) / n.max(1) as f64;
    let mag = 10f64.powi(raw.log10().floor() as i32);
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// A rounded-up axis maximum (the next tick above `v`).
pub fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let t = nice_ticks(0.0, v, 5);
    let step = if t.len() > 1 { t[1] - t[0] } else { v };
    ((v / step).floor() + 1.0) * step
}

/// One chart: data space `[x0, x1] × [y0, y1]` mapped into a `width × height` SVG.
pub struct Chart {
    id: String,
    title: String,
    width: f64,
    height: f64,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    x: (f64, f64),
    y: (f64, f64),
    body: String,
    legend: Vec<(String, String, bool)>,
}

impl Chart {
    pub fn new(
        id: &str,
        title: &str,
        width: f64,
        height: f64,
        x: (f64, f64),
        y: (f64, f64),
    ) -> Self {
        let x = if x.1 > x.0 { x } else { (x.0, x.0 + 1.0) };
        let y = if y.1 > y.0 { y } else { (y.0, y.0 + 1.0) };
        Chart {
            id: id.to_owned(),
            title: title.to_owned(),
            width,
            height,
            left: 72.0,
            right: 24.0,
            top: 52.0,
            bottom: 48.0,
            x,
            y,
            body: String::new(),
            legend: Vec::new(),
        }
    }

    pub fn px(&self, x: f64) -> f64 {
        self.left + (x - self.x.0) / (self.x.1 - self.x.0) * (self.width - self.left - self.right)
    }

    pub fn py(&self, y: f64) -> f64 {
        let y = y.clamp(self.y.0, self.y.1);
        self.height
            - self.bottom
            - (y - self.y.0) / (self.y.1 - self.y.0) * (self.height - self.top - self.bottom)
    }

    fn path_d(&self, pts: &[(f64, f64)]) -> String {
        let mut d = String::with_capacity(pts.len() * 14);
        for (i, (x, y)) in pts.iter().enumerate() {
            let _ = write!(
                d,
                "{}{:.1},{:.1}",
                if i == 0 { "M" } else { "L" },
                self.px(*x),
                self.py(*y)
            );
        }
        d
    }

    /// Adds a legend entry (`dashed` draws the swatch dashed).
    pub fn legend(&mut self, label: &str, color: &str, dashed: bool) {
        self.legend
            .push((label.to_owned(), color.to_owned(), dashed));
    }

    /// A data polyline (class `data`, so the page can measure what the browser drew).
    pub fn line(&mut self, pts: &[(f64, f64)], color: &str, width: f64, dash: Option<&str>) {
        if pts.is_empty() {
            return;
        }
        let dash = dash
            .map(|d| format!(" stroke-dasharray=\"{d}\""))
            .unwrap_or_default();
        let _ = writeln!(
            self.body,
            "<path class=\"data\" d=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"{width}\"{dash} stroke-linejoin=\"round\"/>",
            self.path_d(pts)
        );
    }

    /// A filled area between the line and y = y0.
    pub fn area(&mut self, pts: &[(f64, f64)], color: &str, opacity: f64) {
        if pts.is_empty() {
            return;
        }
        let mut d = self.path_d(pts);
        let _ = write!(
            d,
            "L{:.1},{:.1}L{:.1},{:.1}Z",
            self.px(pts[pts.len() - 1].0),
            self.py(self.y.0),
            self.px(pts[0].0),
            self.py(self.y.0)
        );
        let _ = writeln!(
            self.body,
            "<path class=\"data\" d=\"{d}\" fill=\"{color}\" fill-opacity=\"{opacity}\" stroke=\"none\"/>"
        );
    }

    /// A bar from `(x − w/2, y_from)` to `(x + w/2, y_to)` in data units.
    pub fn bar(&mut self, x: f64, w: f64, y_from: f64, y_to: f64, color: &str) {
        if y_to <= y_from {
            return;
        }
        let (x0, x1) = (self.px(x - w / 2.0), self.px(x + w / 2.0));
        let (ya, yb) = (self.py(y_to), self.py(y_from));
        let _ = writeln!(
            self.body,
            "<rect class=\"bar\" x=\"{x0:.1}\" y=\"{ya:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\"/>",
            (x1 - x0).max(0.5),
            (yb - ya).max(0.0)
        );
    }

    /// A horizontal reference line across the plot with a label at its right end.
    pub fn hline(&mut self, y: f64, color: &str, dash: &str, label: &str) {
        let (x0, x1, py) = (self.px(self.x.0), self.px(self.x.1), self.py(y));
        let _ = writeln!(
            self.body,
            "<path class=\"data\" d=\"M{x0:.1},{py:.1}L{x1:.1},{py:.1}\" stroke=\"{color}\" stroke-width=\"1.5\" stroke-dasharray=\"{dash}\" fill=\"none\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" class=\"ref\" fill=\"{color}\">{}</text>",
            x1 - 4.0,
            py - 5.0,
            esc(label)
        );
    }

    /// A point marker with an optional label above it.
    pub fn marker(&mut self, x: f64, y: f64, color: &str, r: f64, label: Option<&str>) {
        let (px, py) = (self.px(x), self.py(y));
        let _ = writeln!(
            self.body,
            "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"{r}\" fill=\"{color}\" stroke=\"#fff\" stroke-width=\"1\"/>"
        );
        if let Some(l) = label {
            let _ = writeln!(
                self.body,
                "<text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\" class=\"ref\" fill=\"{color}\">{}</text>",
                py - r - 5.0,
                esc(l)
            );
        }
    }

    /// A vertical marker line from the x axis up to `y`, with a label.
    pub fn vline(&mut self, x: f64, y: f64, color: &str, label: &str) {
        let (px, py, base) = (self.px(x), self.py(y), self.py(self.y.0));
        let _ = writeln!(
            self.body,
            "<path d=\"M{px:.1},{base:.1}L{px:.1},{py:.1}\" stroke=\"{color}\" stroke-width=\"1.5\" stroke-dasharray=\"2 3\" fill=\"none\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" class=\"ref\" fill=\"{color}\">{}</text>",
            px + 4.0,
            base - 6.0,
            esc(label)
        );
    }

    /// The finished `<svg>` with axes, ticks (formatted by `fx` / `fy`), labels and legend.
    pub fn finish(
        &self,
        x_label: &str,
        y_label: &str,
        fx: &dyn Fn(f64) -> String,
        fy: &dyn Fn(f64) -> String,
    ) -> String {
        let (w, h) = (self.width, self.height);
        let mut s = String::with_capacity(self.body.len() + 4096);
        let _ = writeln!(
            s,
            "<svg class=\"chart\" id=\"{}\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{}\">",
            esc(&self.id),
            esc(&self.title)
        );
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"20\" class=\"title\">{}</text>",
            self.left,
            esc(&self.title)
        );
        let (px0, px1, py0, py1) = (
            self.px(self.x.0),
            self.px(self.x.1),
            self.py(self.y.0),
            self.py(self.y.1),
        );
        for t in nice_ticks(self.y.0, self.y.1, 5) {
            let y = self.py(t);
            let _ = writeln!(
                s,
                "<path d=\"M{px0:.1},{y:.1}L{px1:.1},{y:.1}\" class=\"grid\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" class=\"tick\">{}</text>",
                px0 - 6.0,
                y + 4.0,
                esc(&fy(t))
            );
        }
        for t in nice_ticks(self.x.0, self.x.1, 8) {
            let x = self.px(t);
            let _ = writeln!(
                s,
                "<path d=\"M{x:.1},{py0:.1}L{x:.1},{:.1}\" class=\"axis\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" class=\"tick\">{}</text>",
                py0 + 5.0,
                py0 + 18.0,
                esc(&fx(t))
            );
        }
        let _ = writeln!(
            s,
            "<path d=\"M{px0:.1},{py1:.1}L{px0:.1},{py0:.1}L{px1:.1},{py0:.1}\" class=\"axis\"/>"
        );
        s.push_str(&self.body);
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" class=\"label\">{}</text>",
            (px0 + px1) / 2.0,
            h - 8.0,
            esc(x_label)
        );
        let _ = writeln!(
            s,
            "<text transform=\"translate(16 {:.1}) rotate(-90)\" text-anchor=\"middle\" class=\"label\">{}</text>",
            (py0 + py1) / 2.0,
            esc(y_label)
        );
        let mut lx = self.left;
        for (label, color, dashed) in &self.legend {
            let dash = if *dashed {
                " stroke-dasharray=\"5 3\""
            } else {
                ""
            };
            let _ = writeln!(
                s,
                "<path d=\"M{lx:.1},36L{:.1},36\" stroke=\"{color}\" stroke-width=\"3\"{dash}/><text x=\"{:.1}\" y=\"40\" class=\"tick\">{}</text>",
                lx + 18.0,
                lx + 22.0,
                esc(label)
            );
            lx += 30.0 + 6.5 * label.chars().count() as f64;
        }
        s.push_str("</svg>\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(
            nice_ticks(0.0, 10.0, 5),
            vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
        );
        assert_eq!(nice_ticks(0.0, 57.0, 5), vec![0.0, 20.0, 40.0]);
        assert_eq!(nice_max(57.0), 60.0);
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_ticks(3.0, 3.0, 5), vec![3.0]);
    }

    #[test]
    fn charts_map_data_into_the_plot_and_escape_text() {
        let mut c = Chart::new("c", "A <b> & c", 400.0, 200.0, (0.0, 10.0), (0.0, 100.0));
        assert_eq!(c.px(0.0), 72.0);
        assert_eq!(c.px(10.0), 376.0);
        assert_eq!(c.py(0.0), 152.0);
        assert_eq!(c.py(100.0), 52.0);
        c.line(&[(0.0, 0.0), (10.0, 100.0)], "#000", 2.0, None);
        let svg = c.finish("x", "y", &|v| format!("{v}"), &|v| format!("{v}"));
        assert!(svg.contains("d=\"M72.0,152.0L376.0,52.0\""), "{svg}");
        assert!(svg.contains("A &lt;b&gt; &amp; c"));
        assert!(svg.starts_with("<svg class=\"chart\""));
    }
}
