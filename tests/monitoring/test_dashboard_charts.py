"""The dashboard's server-rendered SVG charts."""
from __future__ import annotations

from monitoring.dashboard.charts import Series, Slice, bars_svg, line_svg, pie_svg


def test_a_pie_without_data_says_so():
    svg = pie_svg([Slice("sent", 0, "#0f0")], label="Messages")

    assert "No data" in svg
    assert "<circle" not in svg


def test_a_single_slice_fills_the_whole_ring():
    svg = pie_svg([Slice("sent", 7, "#0f0")], label="Messages")

    assert 'stroke-dasharray="100 0"' in svg
    assert "sent: 7 (100.0%)" in svg


def test_slices_are_sized_by_share():
    svg = pie_svg([Slice("sent", 3, "#0f0"), Slice("failed", 1, "#f00")], label="Messages")

    assert 'stroke-dasharray="75 25"' in svg
    assert 'stroke-dasharray="25 75"' in svg
    assert ">4</text>" in svg  # the total in the middle


def test_labels_from_the_database_are_escaped():
    svg = pie_svg([Slice("<script>x</script>", 1, "#0f0")], label='"><b>')
    bars = bars_svg([Slice("<img>", 1, "#0f0")], label="x")
    line = line_svg(["<a>"], [Series("<s>", "#000", [1])], label="x")

    for markup in (svg, bars, line):
        assert "<script>" not in markup and "<img>" not in markup and "<s>" not in markup
    assert "&lt;script&gt;" in svg


def test_a_missing_bucket_breaks_the_line_instead_of_dropping_to_zero():
    svg = line_svg(["a", "b", "c", "d"], [Series("latency", "#000", [1, None, 2, 3])],
                   label="Latency")

    assert svg.count("<polyline") == 2


def test_averages_may_draw_through_missing_buckets():
    svg = line_svg(["a", "b", "c"], [Series("latency", "#000", [1, None, 2], connect=True)],
                   label="Latency")

    assert svg.count("<polyline") == 1


def test_count_charts_use_whole_number_grid_lines():
    svg = line_svg(["a", "b"], [Series("sent", "#000", [1, 2])], label="Volume",
                   y_format=lambda v: f"{v:g}", integer=True)

    labels = [part.split("<")[0] for part in svg.split('class="chart-axis">')[1:]]
    assert labels[:5] == ["0", "1", "2", "3", "4"]


def test_a_line_chart_without_values_says_no_data():
    assert "No data" in line_svg([], [], label="Volume")
    assert "No data" in line_svg(["a"], [Series("x", "#000", [None])], label="Volume")


def test_bars_are_proportional_to_the_largest_value():
    svg = bars_svg([Slice("sms", 4, "#00f"), Slice("email", 2, "#0f0")], label="Deferrals")

    widths = [float(part.split('"')[0]) for part in svg.split('width="')[1:]]
    assert widths[0] == 2 * widths[1]
