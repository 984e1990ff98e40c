"""The schedule language (artwalk.schedule) and `artwalk schedule`: every syntax, Deforum's
semantics, and one-line errors that name line and column."""

from __future__ import annotations

import json
import math

import pytest

from artwalk.errors import InputError, ScheduleError
from artwalk.schedule import (Part, PromptKey, keyframe_seed, parse_numeric, parse_prompt, parse_prompts,
                              read_prompts)
from pipeline.cli import main


def error(fn, *args, **kw) -> str:
    with pytest.raises(ScheduleError) as info:
        fn(*args, **kw)
    message = str(info.value)
    assert "\n" not in message
    return message


def assert_at(message: str, line: int, column: int) -> None:
    assert f", line {line}, column {column}: " in message, message


def texts(key: PromptKey) -> list[tuple[str, float]]:
    return [(p.text, p.weight) for p in key.parts]


# ---------------------------------------------------------------- prompt schedules: syntax


def test_frames_are_sorted_and_the_text_after_the_colon_is_the_prompt():
    s = parse_prompts("60: a lion\n0: a corgi\n30: a red house")
    assert [k.frame for k in s.keys] == [0, 30, 60]
    assert [k.line for k in s.keys] == [2, 3, 1]
    assert [k.text for k in s.keys] == ["a corgi", "a red house", "a lion"]
    assert s.last_frame == 60 and s.source == "--prompts" and not s.uses_max_f


def test_crlf_bom_comments_blank_lines_and_indentation():
    s = parse_prompts("\ufeff# a walk\r\n\r\n   0:  a corgi   # the start\r\n\t\r\n  # nothing\r\n60: a lion\r\n")
    assert [(k.frame, k.text) for k in s.keys] == [(0, "a corgi"), (60, "a lion")]
    assert s.keys[1].line == 6


def test_the_last_character_is_kept_without_a_trailing_newline():
    assert parse_prompts("0: a corgi\n10: a lion").keys[-1].parts == (Part("a lion"),)
    assert parse_prompts("0: x").keys[0].text == "x"


def test_seconds_need_fps_and_round_to_a_frame():
    s = parse_prompts("0: a\n2.5s: b\n1s: c\n0.52s: d", fps=24)
    assert [k.frame for k in s.keys] == [0, 12, 24, 60]
    assert_at(error(parse_prompts, "0: a\n2.5s: b"), 2, 1)


def test_max_f_expressions_need_max_frames():
    s = parse_prompts("0: a\n'max_f/2': b\n\"max_f-1\": c", max_frames=101)
    assert [k.frame for k in s.keys] == [0, 50, 100] and s.uses_max_f  # round(50.5) is 50, Python's round
    message = error(parse_prompts, "0: a\n\"max_f-1\": c")
    assert_at(message, 2, 1)
    assert "uses max_f: give --frames N" in message
    assert parse_prompts('"2*5": a').keys[0].frame == 10  # a constant expression needs nothing


def test_no_frame_zero_the_first_prompt_holds_before_it():
    s = parse_prompts("10: a\n20: b")
    assert [k.frame for k in s.keys] == [10, 20]
    assert s.at(0) == (0, 0, 0.0) and s.at(9) == (0, 0, 0.0)
    assert s.at(10) == (0, 1, 0.0) and s.at(15) == (0, 1, 0.5)
    assert s.at(20) == (1, 1, 0.0) and s.at(99) == (1, 1, 0.0)
    assert s.mix(3) == (Part("a"),)


def test_composable_parts_weights_and_plain_colons():
    key = parse_prompts("0: a red house:1.2 | a storm : 0.8 | sun:-1 | moon:0 | rain:.5 | fog:+2e-1").keys[0]
    assert texts(key) == [("a red house", 1.2), ("a storm", 0.8), ("sun", -1.0), ("moon", 0.0), ("rain", 0.5),
                          ("fog", 0.2)]
    assert texts(parse_prompts("0: a photo: vintage style").keys[0]) == [("a photo: vintage style", 1.0)]
    assert texts(parse_prompts("0: at 12:30").keys[0]) == [("at 12", 30.0)]  # the rule: the last colon
    assert texts(parse_prompts(r"0: at 12\:30").keys[0]) == [("at 12:30", 1.0)]


def test_escapes_are_literal_characters():
    key = parse_prompts(r"0: ratio 16\:9 \| wide \# one \\ two:2 # a comment").keys[0]
    assert texts(key) == [(r"ratio 16:9 | wide # one \ two", 2.0)]
    assert parse_prompts(f"0: {key.text}").keys[0].parts == key.parts  # the text parses back to the same parts


def test_neg_gives_the_line_a_negative_prompt():
    key = parse_prompts("0: a corgi | a lion:0.5 --neg blurry, text: ugly | low res  # no").keys[0]
    assert texts(key) == [("a corgi", 1.0), ("a lion", 0.5)]
    assert key.negative == "blurry, text: ugly | low res"
    assert parse_prompts("0: a corgi--neg").keys[0].text == "a corgi--neg"  # only a word --neg


def test_whitespace_inside_a_prompt_is_normalised():
    assert parse_prompts("0:   a   big\t corgi  ").keys[0].parts == (Part("a big corgi"),)


def test_a_ten_thousand_character_prompt_is_accepted():
    prompt = ("a very long prompt " * 600)[:10_000].strip()
    key = parse_prompts(f"0: {prompt}\n5: {prompt}:0.5").keys
    assert key[0].parts == (Part(prompt),) and key[1].parts == (Part(prompt, 0.5),)


def test_parse_prompt_reads_one_prompt():
    key = parse_prompt("a | b:0.5 --neg c")
    assert texts(key) == [("a", 1.0), ("b", 0.5)] and key.negative == "c"


def test_keyframe_seeds_depend_on_the_walk_seed_and_the_text_only():
    s = parse_prompts("0: a corgi\n30: a lion\n60: a corgi")
    a, b, c = (keyframe_seed(7, k) for k in s.keys)
    assert a == c != b
    assert all(0 <= x < 2**32 for x in (a, b))
    assert keyframe_seed(8, s.keys[0]) != a
    assert keyframe_seed(7, parse_prompts("5:   a  corgi:1.0").keys[0]) == a  # normalised text


def test_mix_merges_identical_texts_and_drops_zero_weights():
    s = parse_prompts("0: a corgi | a hat:0\n10: a lion | a corgi:0.5")
    assert s.mix(0) == (Part("a corgi"),)
    assert s.mix(5) == (Part("a corgi", 0.75), Part("a lion", 0.5))
    assert s.mix(10) == (Part("a lion"), Part("a corgi", 0.5))


# ---------------------------------------------------------------- prompt schedules: errors


def test_an_empty_schedule():
    for text in ("", "\n\n", "# only a comment\n   \n"):
        message = error(parse_prompts, text)
        assert message == "--prompts, line 1, column 1: found end of file, expected a prompt line 'FRAME: text'"


def test_a_frame_that_is_not_a_number():
    message = error(parse_prompts, "0: a\nabc: x")
    assert_at(message, 2, 1)
    assert "found 'abc', expected a frame: an integer, seconds like 2.5s, or a quoted max_f expression" in message


def test_no_colon_after_the_frame():
    message = error(parse_prompts, "10 a cat")
    assert_at(message, 1, 4)
    assert "found 'a', expected ':' after the frame" in message


def test_a_duplicate_frame_names_both_lines():
    message = error(parse_prompts, "0: a\n10: b\n  0s: c", fps=24)
    assert_at(message, 3, 3)
    assert "frame 0 again" in message and "first at line 1" in message


def test_a_negative_frame():
    message = error(parse_prompts, "-5: x")
    assert_at(message, 1, 1)
    assert "found -5, expected a frame >= 0" in message
    assert_at(error(parse_prompts, "0: a\n'max_f-20': b", max_frames=10), 2, 1)


def test_a_frame_past_the_end():
    message = error(parse_prompts, "0: a\n10: b", max_frames=10)
    assert_at(message, 2, 1)
    assert "expected a frame below 10" in message


def test_a_weight_that_is_not_a_number():
    message = error(parse_prompts, "0: a dog\n5: a cat:abc")
    assert_at(message, 2, 10)
    assert "found 'abc', expected a number weight after ':'" in message
    assert_at(error(parse_prompts, "0: a cat: 1.2.3 | b"), 1, 11)


def test_empty_parts_and_prompts():
    assert_at(error(parse_prompts, "0: a | | b"), 1, 8)
    assert_at(error(parse_prompts, "0: a | :1.2"), 1, 8)
    assert_at(error(parse_prompts, "0: a |"), 1, 7)
    assert "found end of line, expected a prompt text" in error(parse_prompts, "0:")
    assert_at(error(parse_prompts, "0:   # nothing"), 1, 6)
    assert_at(error(parse_prompts, "0: --neg ugly"), 1, 4)
    assert "expected a negative prompt after --neg" in error(parse_prompts, "0: a --neg  ")


def test_other_frame_errors():
    assert "expected a whole frame number" in error(parse_prompts, "2.5: x")
    assert "a closing \" on the same line" in error(parse_prompts, '"max_f-1: x', max_frames=9)
    message = error(parse_prompts, "'t': x", max_frames=9)
    assert_at(message, 1, 2)
    assert "found 't', expected the variable max_f" in message
    message = error(parse_prompts, "'max_f/0': x", max_frames=9)
    assert_at(message, 1, 7)
    assert "division by zero in 'max_f/0'" in message


def test_read_prompts_files_text_and_missing_files(tmp_path):
    path = tmp_path / "walk.txt"
    path.write_bytes("\ufeff0: a corgi\r\n60: a café".encode("utf-8"))
    s = read_prompts(str(path))
    assert s.source == str(path) and s.keys[-1].text == "a café"
    assert_at(error(read_prompts, str(path), max_frames=10), 2, 1)
    assert str(path) in error(read_prompts, str(path), max_frames=10)
    assert read_prompts("0: a corgi").source == "the schedule"
    for missing in (str(tmp_path / "nope.txt"), "prompts/walk"):
        with pytest.raises(InputError, match="no such schedule file"):
            read_prompts(missing)
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("0: caf\xe9".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        read_prompts(str(bad))
    with pytest.raises(InputError, match="is a folder"):
        read_prompts(str(tmp_path))


# ---------------------------------------------------------------- numeric schedules


def test_constants_are_interpolated_linearly_and_hold_at_both_ends():
    assert parse_numeric("0:(0), 10:(1)").values(11) == [i / 10 for i in range(11)]
    assert parse_numeric("0:(0), 10:(1)").value_at(5, 11) == 0.5
    assert parse_numeric("5:(1), 10:(3)").values(13) == [1, 1, 1, 1, 1, 1, 1.4, 1.8, 2.2, 2.6, 3, 3, 3]
    assert parse_numeric("0:(7.5), 30:(12), \"max_f-1\":(3)").value_at(15, 61) == pytest.approx(9.75)
    assert parse_numeric("0:(7.5), 30:(12), \"max_f-1\":(3)").values(61)[45:] == \
        pytest.approx([12 - 9 * k / 30 for k in range(15, 31)])


def test_a_plain_number_is_a_constant():
    assert parse_numeric("7.5").values(3) == [7.5, 7.5, 7.5]
    assert parse_numeric(" -2 ").values(2) == [-2.0, -2.0]
    assert parse_numeric("0:(2*pi)").values(1) == [2 * math.pi]  # no variable, no function: a constant


def test_whitespace_newlines_and_a_trailing_comma():
    s = parse_numeric("  0 :\n ( 1 ) ,\n\n  4: (\n 3 \n),\n")
    assert s.values(5) == [1, 1.5, 2, 2.5, 3]


def test_expressions_are_evaluated_at_every_frame_until_the_next_key():
    values = parse_numeric("0:(sin(t/10)), 20:(1)").values(25)
    assert values[:20] == [math.sin(i / 10) for i in range(20)]
    assert values[20:] == [1.0] * 5
    # a constant before an expression is interpolated towards the expression's value at its key
    values = parse_numeric("0:(0), 4:(t*t)").values(7)
    assert values == [0, 4, 8, 12, 16, 25, 36]
    # an expression after the first key: its value at the key holds before it
    assert parse_numeric("3:(t)").values(5) == [3, 3, 3, 3, 4]


def test_sqrt_of_t_works_unlike_deforums_string_substitution():
    assert parse_numeric("0:(sqrt(t))").values(5) == [0, 1, math.sqrt(2), math.sqrt(3), 2]


def test_variables_seed_and_max_f():
    assert parse_numeric("0:(s + t)").values(3, seed=40) == [40, 41, 42]
    assert parse_numeric("0:(max_f)").values(2) == [2, 2]
    s = parse_numeric("0:(0), 'max_f/2':(1), 'max_f-1':(0)")
    assert s.uses_max_f
    assert s.values(5) == [0, 0.5, 1, 0.5, 0] and s.values(4) == [0, 0.5, 1, 0]


def test_python_precedence():
    cases = {"-2**2": -4, "7//2": 3, "7%3": 1, "2**3**2": 512, "2**-1": 0.5, "-7//2": -4, "-7%3": 2,
             "1+2*3-4/2": 5, "(1+2)*3": 9, "+-+1": -1, "1e-3*1000": 1, ".5+.5": 1, "10 - 2 - 3": 5,
             "min(3, 1, 2) + max(1, 2)": 3, "pow(2, 10)": 1024, "floor(2.7) + ceil(2.1) + abs(-1)": 6,
             "log(e) + exp(0) + cos(0) + tan(0)": 3}
    for expr, want in cases.items():
        assert parse_numeric(f"0:({expr})").values(1) == [pytest.approx(want)], expr


def test_seconds_keys():
    assert parse_numeric("0:(0), 0.5s:(1)", fps=4).values(3) == [0, 0.5, 1]
    assert "needs a frame rate" in error(parse_numeric, "0:(0), 0.5s:(1)")


def test_numeric_errors_name_line_and_column():
    message = error(parse_numeric, "0:(x+1)")
    assert_at(message, 1, 4)
    assert "found 'x', expected a variable t, max_f or s, a number or a function" in message
    message = error(parse_numeric, "0:(1),\n10:(foo(t))")
    assert_at(message, 2, 5)
    assert "expected a function: sin, cos" in message
    message = error(parse_numeric, "0:(t+1")
    assert_at(message, 1, 7)
    assert "expected an operator or ')' to close the '(' at line 1, column 3" in message
    assert_at(error(parse_numeric, "0:((t+1)"), 1, 9)
    assert_at(error(parse_numeric, "0:(t+1))"), 1, 8)
    assert_at(error(parse_numeric, "0:(t))"), 1, 6)
    assert "expected ':' after the frame" in error(parse_numeric, "0 (1)")
    assert_at(error(parse_numeric, "0:(1), 10"), 1, 10)
    assert "expected '(' and a value" in error(parse_numeric, "0: 1")
    assert "expected a number, or keys" in error(parse_numeric, "  ")
    assert "found 1 argument to pow, expected 2 arguments" in error(parse_numeric, "0:(pow(2))")
    assert "frame 0 again" in error(parse_numeric, "0:(1), 0:(2)")
    assert "a simpler expression" in error(parse_numeric, "0:(" + "(" * 200 + "1" + ")" * 200 + ")")


def test_evaluation_errors_name_the_frame():
    message = error(parse_numeric("0:(1),\n  12:(1/(t-12))").values, 20)
    assert_at(message, 2, 8)
    assert "division by zero in '1/(t-12)' at t=12" in message
    assert "modulo by zero" in error(parse_numeric("0:(t % (t-1))").values, 3)
    message = error(parse_numeric("0:(log(t - 2))").values, 3)
    assert_at(message, 1, 4)
    assert "log(-2) is undefined" in message and "at t=0" in message
    assert "sqrt(-1) is undefined" in error(parse_numeric("0:(sqrt(t - 1))").values, 2)
    assert "not a real number" in error(parse_numeric("0:((t - 1) ** 0.5)").values, 2)
    assert "exp(1000) overflows" in error(parse_numeric("0:(exp(t * 1000))").values, 2)
    assert "is not finite" in error(parse_numeric("0:(1e308 * (t + 10))").values, 2)
    assert "division by zero in '1/0'" in error(parse_numeric, "0:(1/0)")  # a constant: at once


def test_keys_outside_the_series():
    assert "expected a frame below 5" in error(parse_numeric("0:(1), 10:(2)").values, 5)
    assert "expected a frame below 5" in error(parse_numeric, "0:(1), 10:(2)", max_frames=5)
    assert_at(error(parse_numeric, "0:(1), -3:(2)"), 1, 8)


# ---------------------------------------------------------------- `artwalk schedule`


SCHEDULE = "0: a corgi --neg blurry\n60: a lion | a corgi:0.5"


def test_cli_json(capsys):
    assert main(["schedule", SCHEDULE, "--json", "--seed", "3", "--numeric", "0:(0), 60:(1)",
                 "--numeric", "2", "--guidance", "0:(7.5), 30:(12)"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 61
    key0, key60 = parse_prompts(SCHEDULE).keys
    row = rows[12]
    assert row == {
        "frame": 12, "time": 0.5,
        "from": {"frame": 0, "prompts": [{"text": "a corgi", "weight": 1.0}], "negative": "blurry",
                 "seed": keyframe_seed(3, key0)},
        "to": {"frame": 60, "prompts": [{"text": "a lion", "weight": 1.0}, {"text": "a corgi", "weight": 0.5}],
               "negative": "", "seed": keyframe_seed(3, key60)},
        "blend": 0.2, "prompts": [{"text": "a corgi", "weight": pytest.approx(0.9)},
                                  {"text": "a lion", "weight": 0.2}],
        "negative": "blurry", "seed": keyframe_seed(3, key0),
        "guidance": pytest.approx(9.3), "value": pytest.approx(0.2), "values": [pytest.approx(0.2), 2.0]}
    assert rows[30]["negative"] == "" and rows[30]["seed"] == keyframe_seed(3, key60)  # blend 0.5: the next key's
    assert rows[60]["from"]["frame"] == rows[60]["to"]["frame"] == 60 and rows[60]["blend"] == 0.0


def test_cli_json_numeric_only_and_seed_schedule(capsys):
    assert main(["schedule", "--numeric", "0:(t*t)", "--frames", "3", "--fps", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"frame": 0, "time": 0.0, "value": 0.0, "values": [0.0]},
        {"frame": 1, "time": 0.5, "value": 1.0, "values": [1.0]},
        {"frame": 2, "time": 1.0, "value": 4.0, "values": [4.0]}]
    assert main(["schedule", "0: a\n'max_f-1': b", "--frames", "4", "--seed", "100",
                 "--seed-schedule", "0:(s), 3:(s + 10)", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["from"]["seed"] for r in rows] == [100, 100, 100, 110]
    assert [r["seed"] for r in rows] == [100, 100, 110, 110]


def test_cli_table(capsys):
    assert main(["schedule", SCHEDULE, "--seed", "3", "--numeric", "0:(0), 60:(1)"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 61
    seed = keyframe_seed(3, parse_prompts(SCHEDULE).keys[0])
    assert lines[12].split() == ["12", "0.50s", "0", "->", "60", "blend", "0.200", "a", "corgi:0.90", "|", "a",
                                 "lion:0.20", "neg:", "blurry", "seed", str(seed), "value", "0.2"]


def test_cli_schedule_file_and_default_frames(tmp_path, capsys):
    path = tmp_path / "walk.txt"
    path.write_text("10: a\n20: b\n", encoding="utf-8")
    assert main(["schedule", str(path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 21 and rows[0]["from"]["frame"] == 10 and rows[15]["blend"] == 0.5


@pytest.mark.parametrize("argv, where, code", [
    (["schedule", "0: a\n5: b:abc"], "the schedule, line 2, column 6: found 'abc'", 1),
    (["schedule", "0: a", "--numeric", "0:(x)"], "--numeric, line 1, column 4: found 'x'", 1),
    (["schedule", "0: a\n'max_f-1': b"], "the schedule, line 2, column 1: the frame 'max_f-1' uses max_f", 1),
    (["schedule", "--numeric", "0:(1/(t-2))", "--frames", "4"], "division by zero in '1/(t-2)' at t=2", 1),
    (["schedule", "--numeric", "0:(t)"], "--frames N is needed", 2),
    (["schedule", "0: a", "--frames", "0"], "--frames must be at least 1", 2),
])
def test_cli_errors_are_one_line(capsys, argv, where, code):
    assert main(argv) == code
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("error: ") and where in captured.err


def test_any_text_costs_bounded_time_and_memory():
    import resource
    import time

    start = time.monotonic()
    with pytest.raises(ScheduleError, match=r"line 2, column 20001: line 2 is 7000003 characters long, more than "
                                            r"the 20000"):
        parse_prompts("0: a\n5: " + "a" * 7_000_000)
    with pytest.raises(ScheduleError, match="10000003 characters, more than the 8000000 a schedule may hold"):
        parse_prompts("0: " + "a" * 10_000_000)
    with pytest.raises(ScheduleError, match="more than the 100000 lines"):
        parse_prompts("\n".join(f"{i}: x" for i in range(100_001)))
    with pytest.raises(ScheduleError, match="more than the 1000000 a numeric schedule may have"):
        parse_numeric("0:(1)" + " " * 1_000_000)
    assert time.monotonic() - start < 2
    # Keys are looked up by bisection: many keys and many frames stay quick.
    keys = parse_prompts("\n".join(f"{2 * i}: p{i}" for i in range(20_000)))
    numbers = parse_numeric(", ".join(f"{2 * i}:({i % 7})" for i in range(20_000)))
    start = time.monotonic()
    assert keys.at(39_999) == (19_999, 19_999, 0.0) and keys.at(7) == (3, 4, 0.5)
    assert [keys.at(f) for f in range(40_000)][-1][0] == 19_999
    assert len(numbers.values(40_000)) == 40_000
    assert time.monotonic() - start < 3
