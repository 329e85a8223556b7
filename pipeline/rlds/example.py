"""tf.train.Example parsing with protobuf's runtime: the message classes built from the public
feature.proto/example.proto definitions (tensorflow/core/example), no TensorFlow needed.

Only what an RLDS record uses: Example -> Features -> map<string, Feature>, each Feature a
BytesList, FloatList or Int64List. Built in a pool of our own, so it never clashes with
the same names registered by another library in the process.
"""

from __future__ import annotations

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from pipeline.rlds.errors import ExampleError
from pipeline.rlds.features import FLOAT_DTYPES, FeatureSpec

_F = descriptor_pb2.FieldDescriptorProto


def _message(file: descriptor_pb2.FileDescriptorProto, name: str, fields: list[tuple]) -> None:
    """Add `message name { fields }`; each field is (name, number, type, label, type_name)."""
    message = file.message_type.add(name=name)
    for field_name, number, kind, label, type_name in fields:
        field = message.field.add(name=field_name, number=number, type=kind, label=label)
        if type_name:
            field.type_name = type_name
        if kind in (_F.TYPE_FLOAT, _F.TYPE_INT64) and label == _F.LABEL_REPEATED:
            field.options.packed = True  # as feature.proto says; parsing accepts either form


def _file() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(
        name="vla_shards/tf_example.proto", package="tensorflow", syntax="proto3"
    )
    rep, opt = _F.LABEL_REPEATED, _F.LABEL_OPTIONAL
    _message(file, "BytesList", [("value", 1, _F.TYPE_BYTES, rep, None)])
    _message(file, "FloatList", [("value", 1, _F.TYPE_FLOAT, rep, None)])
    _message(file, "Int64List", [("value", 1, _F.TYPE_INT64, rep, None)])
    _message(
        file,
        "Feature",
        [
            ("bytes_list", 1, _F.TYPE_MESSAGE, opt, ".tensorflow.BytesList"),
            ("float_list", 2, _F.TYPE_MESSAGE, opt, ".tensorflow.FloatList"),
            ("int64_list", 3, _F.TYPE_MESSAGE, opt, ".tensorflow.Int64List"),
        ],
    )
    feature = file.message_type[-1]
    feature.oneof_decl.add(name="kind")
    for field in feature.field:
        field.oneof_index = 0
    # map<string, Feature> feature = 1: a repeated entry message marked map_entry.
    _message(
        file,
        "Features",
        [("feature", 1, _F.TYPE_MESSAGE, rep, ".tensorflow.Features.FeatureEntry")],
    )
    entry = file.message_type[-1].nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=_F.TYPE_STRING, label=opt)
    entry.field.add(
        name="value", number=2, type=_F.TYPE_MESSAGE, label=opt, type_name=".tensorflow.Feature"
    )
    _message(file, "Example", [("features", 1, _F.TYPE_MESSAGE, opt, ".tensorflow.Features")])
    return file


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())
Example = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("tensorflow.Example"))
Feature = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("tensorflow.Feature"))


def parse_example(data: bytes):
    """The features map of a serialized Example: key -> Feature (with one of its three lists)."""
    example = Example()
    try:
        example.ParseFromString(data)
    except DecodeError as e:
        raise ExampleError(f"not a tf.train.Example ({e})") from e
    return example.features.feature


_LIST_OF = {"image": "bytes_list", "text": "bytes_list"}


def _list_kind(spec: FeatureSpec) -> str:
    if spec.kind == "tensor":
        return "float_list" if spec.dtype in FLOAT_DTYPES else "int64_list"
    return _LIST_OF[spec.kind]


class Record:
    """One episode's record: its values split into steps by the features' specs."""

    def __init__(self, data: bytes, specs: dict[str, FeatureSpec]):
        self._map = parse_example(data)
        self.specs = specs
        self.steps = self._count_steps()

    def __contains__(self, key: str) -> bool:
        return key in self.specs and key in self._map

    def _values(self, key: str):
        spec = self.specs[key]
        if spec.problem:
            raise ExampleError(f"{key} is {spec.problem}")
        if key not in self._map:
            raise ExampleError(f"the record has no {key}")
        feature = self._map[key]
        kind, expected = feature.WhichOneof("kind"), _list_kind(spec)
        if kind is None:  # an empty list of any type: TFDS writes no values for no steps
            return []
        if kind != expected:
            raise ExampleError(
                f"{key} holds a {kind} but features.json says {spec.kind} {spec.dtype}"
            )
        return getattr(feature, kind).value

    def _count_steps(self) -> int:
        """The episode's step count, the same from every per-step feature present."""
        counts: dict[int, str] = {}
        for key, spec in self.specs.items():
            if not spec.per_step or spec.problem or key not in self._map:
                continue
            n = len(self._values(key))
            size = spec.size if spec.kind == "tensor" else 1
            if size == 0:
                continue
            if n % size:
                raise ExampleError(
                    f"{key} has {n} values, not a whole number of {spec.shape} steps"
                )
            counts.setdefault(n // size, key)
        if len(counts) > 1:
            (a, key_a), (b, key_b) = list(counts.items())[:2]
            raise ExampleError(f"{key_a} has {a} steps but {key_b} has {b}")
        return next(iter(counts), 0)

    def tensor(self, key: str) -> np.ndarray:
        """A tensor feature: (steps, *shape) for one in steps, else its shape."""
        spec = self.specs[key]
        values = np.asarray(
            self._values(key), dtype=np.float64 if spec.dtype in FLOAT_DTYPES else np.int64
        )
        shape = (self.steps, *spec.shape) if spec.per_step else spec.shape
        if values.size != int(np.prod(shape)):
            raise ExampleError(f"{key} has {values.size} values, expected shape {shape}")
        return values.reshape(shape).astype(spec.dtype)

    def raw(self, key: str) -> list[bytes]:
        """The encoded images (or UTF-8 texts) of a bytes feature, one per step."""
        return list(self._values(key))

    def texts(self, key: str) -> list[str]:
        try:
            return [b.decode("utf-8") for b in self.raw(key)]
        except UnicodeDecodeError as e:
            raise ExampleError(f"{key} is not valid UTF-8 ({e})") from e
