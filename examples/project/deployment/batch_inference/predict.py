"""Batch inference: score a batch of customers with the model behind an alias.

Runs as the `spark_python_task` of `batch_inference_job`, or by hand:

    python deployment/batch_inference/predict.py --model-name dev.churn_model.churn_model

Writes a CSV of predictions and prints one JSON summary line on stdout.
Exit code 0 on success, 1 when there is no model to score with, 2 on bad arguments.
"""

import argparse
import json
import os
import sys
import tempfile


def _bundle_root():
    # `__file__` is <root>/deployment/batch_inference/predict.py; fall back to
    # argv[0] and then the working directory if a runner does not define it.
    here = globals().get("__file__") or (sys.argv[0] if sys.argv and sys.argv[0] else "")
    if here:
        return os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(here)), "..", ".."))
    return os.path.abspath(os.path.join(os.getcwd(), "..", ".."))


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Score customers with the churn model.")
    parser.add_argument("--env", default="dev")
    parser.add_argument("--model-name", required=True, help="e.g. dev.churn_model.churn_model")
    parser.add_argument("--alias", default="champion")
    parser.add_argument("--model-uri", default="", help="score with this model file instead of the alias")
    parser.add_argument("--registry-dir", default="", help="default: <tempdir>/churn_model_registry")
    parser.add_argument("--input-rows", type=int, default=500)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--output", default="", help="CSV path; default: <tempdir>/churn_predictions/<env>/predictions.csv")
    return parser.parse_args(argv)


def main(argv=None):
    root = _bundle_root()
    if root not in sys.path:
        sys.path.insert(0, root)
    from churn import pipeline, registry

    args = parse_args(sys.argv[1:] if argv is None else argv)
    registry_dir = args.registry_dir or registry.default_registry_dir()
    try:
        model_uri = args.model_uri or registry.resolve_alias(registry_dir, args.model_name, args.alias)
        if not os.path.isfile(model_uri):
            raise LookupError("model file %s does not exist" % model_uri)
    except LookupError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 1
    seed = pipeline.SCORING_SEED if args.seed is None else args.seed
    predictions = pipeline.batch_predict(model_uri, rows=args.input_rows, seed=seed)
    output = args.output or os.path.join(
        tempfile.gettempdir(), "churn_predictions", args.env, "predictions.csv"
    )
    path = pipeline.write_predictions(output, predictions)
    summary = {
        "env": args.env,
        "model_uri": model_uri,
        "rows": len(predictions),
        "predicted_churners": sum(p["prediction"] for p in predictions),
        "output": path,
    }
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
