"""The `inferline` CLI commands that work without a running platform."""

from local_runtime.cli import main
from model_artifacts.bundle import ModelBundle

HEADER = "user_id,purchases_30d,avg_order_value,days_since_last_visit,tenure_days\n"


def test_features_load_reports_bad_rows_and_exits_nonzero(aws, tmp_path, capsys):
    path = tmp_path / "users.csv"
    path.write_text(HEADER + "a1,3,10,1,5\na2,-1,x,1,5\n")
    code = main(["features", "load", "purchase-propensity", str(path), "--table", aws.features.name])
    out = capsys.readouterr().out
    assert code == 2
    assert "loaded 1 row(s), rejected 1" in out and "row 3: purchases_30d: must be >= 0" in out
    assert aws.features.get_item(Key={"pk": "user#a1"})["Item"]["tenure_days"] == 5


def test_train_saves_a_version_and_can_make_it_current(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("INFERLINE_HOME", str(tmp_path))
    assert main(["train", "purchase-propensity", "--rows", "2000", "--version", "v9", "--current"]) == 0
    saved = ModelBundle.load(tmp_path / "models" / "purchase-propensity" / "v9")
    current = ModelBundle.load(tmp_path / "models" / "purchase-propensity" / "current")
    assert saved.version == current.version == "v9"
    assert 0.5 < saved.metrics["roc_auc"] < 1
    assert "version v9 saved" in capsys.readouterr().out


def test_errors_are_reported_without_a_traceback(capsys):
    assert main(["train", "no-such-model"]) == 1
    assert "error:" in capsys.readouterr().err
