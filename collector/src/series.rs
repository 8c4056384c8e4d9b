//! Placeholder: replaced by the store work at merge.
use nodewarden_proto::v1::Sample;

pub fn series_of(sample: &Sample) -> Vec<(String, f64)> {
    let mut v = Vec::new();
    if let Some(t) = sample
        .temperatures
        .iter()
        .filter(|t| t.is_cpu)
        .map(|t| t.millicelsius)
        .max()
    {
        v.push(("cpu_temp".to_string(), t as f64 / 1000.0));
    }
    if let Some(c) = &sample.cpu {
        v.push(("cpu_usage".to_string(), c.usage_percent as f64));
    }
    v
}

pub fn unit_of(metric: &str) -> &'static str {
    match metric {
        "cpu_temp" => "celsius",
        "cpu_usage" => "percent",
        _ => "",
    }
}
