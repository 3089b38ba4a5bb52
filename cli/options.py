"""Command-line options declared once and shared by the commands (``typing.Annotated`` aliases).

A command names an option by its alias (``model: ModelOption``) instead of repeating its flags,
metavar and help; :func:`with_help` gives one command its own help text where that says more;
:class:`QdrantTarget` carries the Qdrant connection options as one value.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_args

import typer
from rcml_st.cli._common import Device

from rcml_st.errors import UsageError

if TYPE_CHECKING:
    from rcml_st.index import RelationIndex

DEFAULT_QDRANT_PATH = Path("qdrant_data")
DEFAULT_RETRY_TIMEOUT = 120.0

ModelOption = Annotated[
    Path,
    typer.Option(
        "--model",
        "-m",
        metavar="DIR|ID",
        help="The RCML model: a folder written by rcml-st train, or a Hugging Face Hub id (org/name; "
        "from the local cache when HF_HUB_OFFLINE=1).",
    ),
]
QdrantUrlOption = Annotated[
    str | None,
    typer.Option(
        "--qdrant-url",
        metavar="URL",
        help="A Qdrant server, e.g. http://localhost:6333 or https://xyz.cloud.qdrant.io "
        "(default: the embedded store in --qdrant-path).",
    ),
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        metavar="KEY",
        envvar="QDRANT_API_KEY",
        help="The server's API key (also read from QDRANT_API_KEY).",
    ),
]
GrpcPortOption = Annotated[
    int | None,
    typer.Option(
        "--grpc-port",
        metavar="PORT",
        min=1,
        max=65535,
        help="The server's gRPC port, when it is not 6334. gRPC (faster) is used when the URL is on "
        "port 6333 or this is given; otherwise REST.",
    ),
]
QdrantPathOption = Annotated[
    Path | None,
    typer.Option(
        "--qdrant-path",
        metavar="DIR",
        help="The embedded store's folder, used without --qdrant-url (default: ./qdrant_data).",
    ),
]
CollectionOption = Annotated[str, typer.Option("--collection", metavar="NAME", help="The collection name.")]
RetryTimeoutOption = Annotated[
    float,
    typer.Option(
        "--retry-timeout",
        metavar="SECONDS",
        min=0,
        help="How long to keep retrying a server that is down or failing (backoff between tries).",
    ),
]
DeviceOption = Annotated[Device, typer.Option("--device", help="Where to run the model.")]
SeedOption = Annotated[int, typer.Option("--seed", help="The random seed (same seed, same result).")]
SkipInvalidOption = Annotated[
    bool,
    typer.Option("--skip-invalid", help="Skip bad records (counted) instead of stopping at the first."),
]
ProgressOption = Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")]
TrustRemoteCodeOption = Annotated[
    bool,
    typer.Option(
        "--trust-remote-code",
        help="Let the model's files name module classes from outside rcml_st (their code runs): "
        "only for a model you trust. Without it such a model is refused before anything is imported.",
    ),
]
JsonlOutputOption = Annotated[Path, typer.Option("--output", "-o", help="The data file to write (.jsonl).")]
DataArgument = Annotated[Path, typer.Argument(metavar="DATA.jsonl", help="The data file (.jsonl).")]


def with_help(option: Any, help: str) -> Any:
    """One of the aliases above with a command's own help text (where it says more than the shared one).

    Examples:
        >>> seed = with_help(SeedOption, "Seed for --cluster.")
        >>> get_args(seed)[1].help
        'Seed for --cluster.'
        >>> get_args(SeedOption)[1].help
        'The random seed (same seed, same result).'
    """
    kind, info = get_args(option)
    info = copy.copy(info)
    info.help = help
    return Annotated[kind, info]


@dataclass(frozen=True)
class QdrantTarget:
    """Where the vectors live, as the command-line options say (``--qdrant-url`` ... ``--retry-timeout``).

    Raises:
        UsageError: both a server and the embedded store, or a gRPC port without a server.
    """

    url: str | None = None
    api_key: str | None = None
    grpc_port: int | None = None
    path: Path | None = None
    collection: str = "rcml"
    retry_timeout: float = DEFAULT_RETRY_TIMEOUT

    def __post_init__(self) -> None:
        if self.url is not None and self.path is not None:
            raise UsageError(
                "give either --qdrant-url (a server) or --qdrant-path (the embedded store), not both"
            )
        if self.url is None and self.grpc_port is not None:
            raise UsageError("--grpc-port needs --qdrant-url (the embedded store has no ports)")

    def open(self, must_exist: bool = False) -> RelationIndex:
        """Connects to the server or opens the embedded store.

        Args:
            must_exist: the embedded store must already exist (searching a store that was never
                written is a mistake, not an empty result).
        """
        from rcml_st.index import RelationIndex, RetryPolicy

        path = self.path if self.path is not None else DEFAULT_QDRANT_PATH
        if self.url is None and must_exist and not path.is_dir():
            raise UsageError(
                f"no embedded Qdrant store at {path}; run rcml-st index first, or pass --qdrant-path DIR "
                "or --qdrant-url URL"
            )
        return RelationIndex.connect(
            url=self.url,
            api_key=self.api_key,
            grpc_port=self.grpc_port,
            path=path,
            collection=self.collection,
            retry=RetryPolicy(max_time=self.retry_timeout),
        )
