"""Reading and validating source tables, shared by every dataset adapter.

Conventions (so every error points at the same place a person would look):

* Tables are read into DataFrames whose *index is the 1-based row number* in the source file,
  with the header as row 1 — the first data row is row 2. Parquet files use the same numbering
  (as if exported to CSV) so messages look alike for both formats.
* CSV cells are read as text with no NA guessing (a title "NA" or a user "null" is real data);
  empty cells become "". Blank lines are dropped but the row numbers of later rows stay right.
* A "row" is a CSV record: a quoted cell spanning lines still counts as one row.
* Every check is vectorized; Python only runs to format the message for the first bad row.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from serendip.data.schema import DataError

__all__ = [
    "SourceFiles",
    "first_bad_row",
    "float_column",
    "id_column",
    "read_csv",
    "read_parquet",
    "read_table",
    "require_columns",
    "require_known",
    "require_nonempty",
    "require_rows",
    "require_unique",
    "text_column",
    "timestamp_column",
]

# Beyond this a "unix seconds" value cannot be converted to int64 nanoseconds anywhere downstream.
_MAX_ABS_SECONDS = 9_000_000_000_000


class SourceFiles:
    """Reads each source file once, and hashes exactly the bytes that were parsed.

    Hashing the parsed bytes (rather than re-reading the files) keeps the fingerprint consistent with
    the data even if a file changes while we load.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._blobs: dict[str, bytes] = {}

    def read(self, name: str) -> bytes:
        path = self.root / name
        if not path.is_file():
            raise DataError(str(path), "file not found")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DataError(str(path), f"cannot read file: {exc}") from exc
        self._blobs[name] = data
        return data

    def fingerprint(self, extra: Iterable[tuple[str, str]] = ()) -> str:
        """sha256 over (name, length, bytes) of every file read, in name order, plus extra key/values."""
        h = hashlib.sha256()
        for name in sorted(self._blobs):
            data = self._blobs[name]
            # Length-prefixed so that no two different file sets can produce the same byte stream.
            h.update(f"file\0{name}\0{len(data)}\0".encode())
            h.update(data)
        for key, value in sorted(extra):
            h.update(f"meta\0{key}\0{value}\0".encode())
        return h.hexdigest()


# ---------------------------------------------------------------------------------------------- reading


def _number_rows(df: pd.DataFrame) -> pd.DataFrame:
    df.index = pd.RangeIndex(2, len(df) + 2, name="row")
    return df


def read_csv(path: Path, data: bytes) -> pd.DataFrame:
    """Parse CSV bytes into an all-text DataFrame indexed by row number."""
    file = str(path)
    if not data.strip():
        raise DataError(file, "file is empty (no header, no data rows)")
    try:
        df = pd.read_csv(
            io.BytesIO(data),
            dtype=str,
            keep_default_na=False,
            na_values=[],
            skip_blank_lines=False,  # keep blank lines so row numbers match the file's lines
            encoding="utf-8-sig",  # tolerate a byte-order mark on the header
        )
    except UnicodeDecodeError as exc:
        raise DataError(file, f"unreadable CSV: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError(file, "file is empty (no header, no data rows)") from exc
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataError(file, f"unreadable CSV: {_short(exc)}", row=_line_from_parser_error(exc)) from exc
    df.columns = [str(c).strip() for c in df.columns]
    _number_rows(df)
    # Short rows leave NaN in their missing cells; blank lines come back as rows with nothing in
    # them and are dropped (their neighbours keep their row numbers).
    df = df.fillna("")
    if len(df.columns):
        df = df[(df != "").any(axis=1)]
    return df


def read_parquet(path: Path, data: bytes) -> pd.DataFrame:
    file = str(path)
    try:
        df = pd.read_parquet(io.BytesIO(data))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(file, f"unreadable Parquet: {_short(exc)}") from exc
    df = df.reset_index(drop=True)
    df.columns = [str(c).strip() for c in df.columns]
    return _number_rows(df)


def read_table(path: Path, data: bytes) -> pd.DataFrame:
    """Read a .csv or .parquet file by its suffix."""
    if path.suffix.lower() == ".parquet":
        return read_parquet(path, data)
    return read_csv(path, data)


def _short(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__


def _line_from_parser_error(exc: BaseException) -> int | None:
    # pandas' C parser says "Expected 3 fields in line 5, saw 4" (1-based line) but
    # "EOF inside string starting at row 2" (0-based line).
    text = str(exc)
    if match := re.search(r"\bline (\d+)\b", text):
        return int(match.group(1))
    if match := re.search(r"starting at row (\d+)\b", text):
        return int(match.group(1)) + 1
    return None


# --------------------------------------------------------------------------------------- table checks


def require_rows(df: pd.DataFrame, path: Path) -> None:
    if len(df) == 0:
        raise DataError(str(path), "file has a header but no data rows")


def require_columns(df: pd.DataFrame, columns: Sequence[str], path: Path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        names = ", ".join(f"'{c}'" for c in missing)
        found = ", ".join(f"'{c}'" for c in df.columns) or "none"
        raise DataError(str(path), f"missing required column(s) {names} (found: {found})")


def first_bad_row(mask: pd.Series) -> int | None:
    """Row number (the index label) of the first True in mask, or None."""
    values = mask.to_numpy(dtype=bool, na_value=True)
    if not values.any():
        return None
    return int(mask.index[int(values.argmax())])


# ------------------------------------------------------------------------------------- column parsers


def _as_text(s: pd.Series) -> pd.Series:
    """Any column (CSV text or typed Parquet) as stripped Python str; missing → ""."""
    if pd.api.types.is_float_dtype(s.dtype):
        # Integer ids stored as floats (Parquet columns with nulls) should read "12", not "12.0".
        finite = s.dropna()
        if len(finite) and bool(np.all(np.mod(finite.to_numpy(), 1) == 0)):
            s = s.astype("Int64")
    out = s.astype(object).where(s.notna(), "")
    return out.map(str, na_action="ignore").str.strip().astype(object)


def require_nonempty(values: pd.Series, path: Path, column: str, what: str) -> None:
    row = first_bad_row(values == "")
    if row is not None:
        raise DataError(str(path), f"empty {what}", row=row, column=column)


def id_column(df: pd.DataFrame, column: str, path: Path, what: str) -> pd.Series:
    """A non-empty identifier column as str."""
    values = _as_text(df[column])
    require_nonempty(values, path, column, what)
    return values


def text_column(df: pd.DataFrame, column: str, path: Path, *, what: str, required: bool) -> pd.Series:
    """A free-text column as str (stripped); `required` forbids empty values."""
    values = _as_text(df[column])
    if required:
        require_nonempty(values, path, column, what)
    return values


def require_unique(values: pd.Series, path: Path, column: str, what: str) -> None:
    dup = values.duplicated(keep="first")
    row = first_bad_row(dup)
    if row is not None:
        value = values.loc[row]
        first = first_bad_row(values == value)
        raise DataError(
            str(path), f"duplicate {what} {value!r} (first seen in row {first})", row=row, column=column
        )


def require_known(values: pd.Series, known: pd.Index, path: Path, column: str, what: str) -> None:
    row = first_bad_row(~values.isin(known))
    if row is not None:
        raise DataError(str(path), f"unknown {what} {values.loc[row]!r}", row=row, column=column)


def _bad_value(path: Path, raw: pd.Series, row: int, column: str, expected: str) -> DataError:
    value = raw.loc[row]
    shown = "empty value" if _is_missing(value) or str(value).strip() == "" else repr(value)
    return DataError(str(path), f"expected {expected}, got {shown}", row=row, column=column)


def _is_missing(value: object) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def float_column(df: pd.DataFrame, column: str, path: Path) -> pd.Series:
    """A finite numeric column as float32 (ratings, weights)."""
    raw = df[column]
    if pd.api.types.is_bool_dtype(raw.dtype) or pd.api.types.is_numeric_dtype(raw.dtype):
        numbers = raw.astype("float64")
    else:
        numbers = pd.to_numeric(_as_text(raw), errors="coerce").astype("float64")
    row = first_bad_row(~np.isfinite(numbers))
    if row is not None:
        raise _bad_value(path, raw, row, column, "a finite number")
    return numbers.astype(np.float32)


def timestamp_column(df: pd.DataFrame, column: str, path: Path) -> pd.Series:
    """Unix seconds (int64) from integer/float seconds, datetimes or ISO-8601 strings.

    Naive ISO-8601 values are taken as UTC; fractional seconds are floored.
    """
    raw = df[column]
    expected = "unix seconds or an ISO-8601 date/time"
    if isinstance(raw.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(raw.dtype):
        stamps = raw if isinstance(raw.dtype, pd.DatetimeTZDtype) else raw.dt.tz_localize("UTC")
        seconds = _seconds_since_epoch(stamps)
    elif pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        seconds = raw.astype("float64")
    else:
        text = _as_text(raw)
        seconds = pd.to_numeric(text, errors="coerce").astype("float64")
        rest = seconds.isna() & (text != "")
        if rest.any():
            # Only the non-numeric cells go through the (slower) date parser.
            parsed = pd.to_datetime(text[rest], format="ISO8601", utc=True, errors="coerce")
            seconds.loc[rest] = _seconds_since_epoch(parsed)
    bad = ~np.isfinite(seconds) | (seconds.abs() > _MAX_ABS_SECONDS)
    row = first_bad_row(bad)
    if row is not None:
        raise _bad_value(path, raw, row, column, expected)
    return np.floor(seconds).astype(np.int64)


def _seconds_since_epoch(stamps: pd.Series) -> pd.Series:
    # Subtraction works whatever the datetime unit (s/ms/us/ns); NaT stays NaN.
    delta = stamps - pd.Timestamp(0, tz="UTC")
    return delta / pd.Timedelta(seconds=1)
