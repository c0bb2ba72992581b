"""Destination URIs of WanVideoToStorageOperator (``transfers/sinks``): scheme, connection, container, key."""

from __future__ import annotations

import re

import pytest

from airflow_provider_wan.exceptions import WanInvalidInputError
from airflow_provider_wan.transfers.sinks import Destination, encode_header_value


@pytest.mark.parametrize(
    ("uri", "conn_id", "expected"),
    [
        ("s3://my-bucket/wan/a.mp4", None, Destination("s3", None, "my-bucket", "wan/a.mp4")),
        ("s3://aws_videos@my-bucket/wan/a.mp4", None, Destination("s3", "aws_videos", "my-bucket", "wan/a.mp4")),
        # an explicit conn_id wins over the one in the URI
        ("s3://aws_videos@my-bucket/a.mp4", "other", Destination("s3", "other", "my-bucket", "a.mp4")),
        ("gs://google_cloud_default@b/x/y.mp4", None, Destination("gs", "google_cloud_default", "b", "x/y.mp4")),
        ("abfs://videos@account.dfs.core.windows.net/a.mp4", None, Destination("abfs", None, "videos", "a.mp4")),
        ("file:///data/videos/a.mp4", None, Destination("file", None, "/", "data/videos/a.mp4")),
        ("/data/videos/a.mp4", None, Destination("file", None, "/", "data/videos/a.mp4")),
    ],
)
def test_destinations_parse_the_way_airflow_users_write_them(
    uri: str, conn_id: str | None, expected: Destination
) -> None:
    assert Destination.parse(uri, conn_id) == expected


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("ftp://host/a.mp4", "not a supported destination"),
        ("videos/a.mp4", "not a supported destination"),
        ("s3:///a.mp4", "names no bucket"),
        ("file://relative/a.mp4", "needs an absolute path"),
        # a URI's query and fragment are not part of its path: the object would silently be 'wan/what', and
        # 'wan/#{wan_task_id}.mp4' would put every task's video at the one key 'wan/'
        ("s3://my-bucket/wan/what?.mp4", "'?' or '#'"),
        ("gs://my-bucket/wan/#{wan_task_id}.mp4", "'?' or '#'"),
        ("file:///data/videos/take#2.mp4", "'?' or '#'"),
        ("/data/videos/take?2.mp4", "'?' or '#'"),
    ],
)
def test_bad_destinations_name_the_parameter(uri: str, words: str) -> None:
    with pytest.raises(WanInvalidInputError, match=words) as caught:
        Destination.parse(uri)
    assert str(caught.value).startswith("destination:")


def test_header_values_stay_ascii_and_round_trip() -> None:
    from urllib.parse import unquote

    for text in ("plain prompt, 100% real", "一只红狐狸\n在雪地里", "tab\there"):
        encoded = encode_header_value(text)
        assert encoded.isascii()
        assert "\n" not in encoded
        assert unquote(encoded) == text


@pytest.mark.parametrize("chain", ["sa@p.iam.gserviceaccount.com", ["a@p.iam.gserviceaccount.com", "b@p.iam"]])
def test_impersonation_reaches_a_gcs_destination(chain: str | list[str]) -> None:
    from airflow_provider_wan.transfers.sinks.gcs import GCSSink
    from airflow_provider_wan.transfers.wan_to_storage import WanVideoToStorageOperator

    operator = WanVideoToStorageOperator(
        task_id="store", wan_task_id="t-1", destination="gs://bucket/wan/", impersonation_chain=chain
    )
    assert "impersonation_chain" in operator.template_fields
    sink, key = operator.destination("t-1")
    assert isinstance(sink, GCSSink)
    assert (sink.container, key, sink.impersonation_chain) == ("bucket", "wan/t-1.mp4", chain)


@pytest.mark.parametrize("uri", ["s3://bucket/x.mp4", "abfs://videos@acct.dfs.core.windows.net/x.mp4", "file:///tmp/x"])
def test_impersonation_elsewhere_is_refused_by_name(uri: str) -> None:
    from airflow_provider_wan.transfers.wan_to_storage import WanVideoToStorageOperator

    operator = WanVideoToStorageOperator(
        task_id="store", wan_task_id="t-1", destination=uri, impersonation_chain="sa@p.iam.gserviceaccount.com"
    )
    with pytest.raises(WanInvalidInputError, match=r"^impersonation_chain: only gs:// destinations .*conn_id"):
        operator.destination("t-1")


@pytest.mark.parametrize(
    "uri",
    [
        # an Azure SAS URL or a presigned S3 URL is how some teams name a place to write: not a destination here
        "https://account.blob.core.windows.net/videos/v.mp4?sv=2024-05-04&sp=cw&sig=c2FzLXNpZ25hdHVyZQ%3D",
        "https://b.s3.amazonaws.com/v.mp4?X-Amz-Credential=AKIAX&X-Amz-Signature=c2FzLXNpZ25hdHVyZQ",
        "abfs://videos@account.dfs.core.windows.net/v.mp4?sig=c2FzLXNpZ25hdHVyZQ",
    ],
    ids=["azure-sas", "s3-presigned", "abfs-with-sas"],
)
def test_a_refused_destination_never_shows_its_signature(uri: str) -> None:
    with pytest.raises(WanInvalidInputError, match=r"^destination: ") as caught:
        Destination.parse(uri)
    assert "c2FzLXNpZ25hdHVyZQ" not in str(caught.value)
    assert "account" in str(caught.value) or "s3.amazonaws.com" in str(caught.value)  # still says which one


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("https://account.blob.core.windows.net/videos/v.mp4?sv=2024&sig=c2FzLXNpZ25hdHVyZQ", "a signed web link"),
        ("https://b.s3.amazonaws.com/{{ ds }}/v.mp4?X-Amz-Signature=c2FzLXNpZ25hdHVyZQ", "a signed web link"),
        ("abfs://videos/{{ ds }}/{wan_task_id}.mp4?sig=c2FzLXNpZ25hdHVyZQ", "come from its connection"),
        ("s3://bucket/wan/take#c2FzLXNpZ25hdHVyZQ.mp4", "'?' or '#'"),
    ],
    ids=["azure-sas", "templated-path-s3-presigned", "abfs-with-sas", "fragment"],
)
def test_a_query_written_in_the_dag_is_refused_as_the_dag_is_parsed(uri: str, words: str) -> None:
    # outside any template, it is in every rendering: refused before an upstream generation is paid for
    from airflow_provider_wan.transfers.wan_to_storage import WanVideoToStorageOperator

    with pytest.raises(WanInvalidInputError, match=rf"^destination: .*{re.escape(words)}") as caught:
        WanVideoToStorageOperator(task_id="store", wan_task_id="t-1", destination=uri)
    assert "c2FzLXNpZ25hdHVyZQ" not in str(caught.value)


@pytest.mark.parametrize(
    "uri",
    [
        "{{ params.destination }}",
        "s3://bucket/{{ 'a?b' if params.x else 'c' }}/{wan_task_id}.mp4",
        "gs://bucket/wan/{# the date #}{{ ds }}/{wan_task_id}.mp4",
    ],
    ids=["all-templated", "question-mark-inside-an-expression", "comment"],
)
def test_a_template_is_judged_once_rendered(uri: str) -> None:
    # a '?' or '#' of Jinja's own (an expression, a comment) may render to nothing: checked at run time instead
    from airflow_provider_wan.transfers.wan_to_storage import WanVideoToStorageOperator

    operator = WanVideoToStorageOperator(task_id="store", wan_task_id="t-1", destination=uri)
    assert operator.destination_uri == uri
