"""The interactive assistant: ask one question of every (strategy, model) pair and compare them.

    ragbench app                 # or: make app; opens on http://127.0.0.1:8501

A Streamlit page over pipelines/ask.py, which runs each cell through the experiments' own code."""

from __future__ import annotations

import os

import streamlit as st

from pipelines import ask
from pipelines.errors import UserError

st.set_page_config(page_title="RAG vs long context", layout="wide")
st.title("One question, every strategy and model")


@st.cache_resource(show_spinner="Parsing and indexing the documents…")
def session(dataset, folder, overrides, model_overrides, max_usd) -> ask.Session:
    return ask.Session(dataset=dataset, folder=folder, overrides=list(overrides),
                       model_overrides={k: list(v) for k, v in model_overrides}, max_usd=max_usd)


@st.cache_data(show_spinner="Checking which models have keys…")
def choices(model_overrides) -> list[ask.ModelChoice]:
    return ask.model_choices({k: list(v) for k, v in model_overrides})


with st.sidebar:
    st.header("Documents")
    source = st.radio("From", ["Data set", "Folder", "Upload"], horizontal=True, key="source")
    dataset = folder = None
    if source == "Data set":
        names = [n for n in ask.options("dataset") if n not in ask.NEEDS_PATHS]
        dataset = st.selectbox("Data set (conf/dataset/)", names, index=names.index(ask.DEFAULT_DATASET), key="dataset")
    elif source == "Folder":
        folder = st.text_input("Folder of PDF, markdown or text files", key="folder") or None
    else:
        files = st.file_uploader("PDF, markdown or text", type=["pdf", "md", "txt"], accept_multiple_files=True,
                                 key="upload")
        if files:
            folder = str(ask.save_uploads([(f.name, f.getvalue()) for f in files], ".cache"))
    overrides = st.text_input("Hydra overrides", value=os.environ.get("RAGBENCH_APP_OVERRIDES", ""), key="overrides", help="as on the command line, e.g. "
                              "index.chunk_size=512 tracking.uri=http://mlflow:5000")
    per_model = st.text_area("Per-model overrides", key="model_overrides", help="one line per model, e.g. "
                             "`deepseek-chat: model.base_url=https://my-gateway/v1`")
    st.header("Strategies")
    strategies = st.multiselect("Strategies", ask.STRATEGIES, default=["rag", "full_context"], key="strategies")
    top_k = st.slider("rag: chunks given (retrieval.top_k)", 1, 20, 5, key="top_k")
    budget = st.number_input("Context budget in tokens (0: none)", min_value=0, value=0, step=1000, key="context_budget")
    st.header("Models")
    try:
        model_overrides = tuple((k, tuple(v)) for k, v in ask.parse_model_overrides(per_model).items())
        available = choices(model_overrides)
    except UserError as err:
        st.error(str(err))
        st.stop()
    usable = [c.name for c in available if c.available]
    models = st.multiselect("Models", usable, default=[ask.LOCAL_MODEL], key="models")
    for c in available:
        if not c.available:
            st.caption(f"{c.name}: {c.reason}")
    max_usd = st.number_input("Spend cap for this session (USD)", min_value=0.0, value=0.50, step=0.10,
                              format="%.2f", key="max_usd")

if source != "Data set" and not folder:
    st.info("Choose a folder or upload documents to start.")
    st.stop()
try:
    current = session(dataset, folder, tuple(overrides.split()), model_overrides, max_usd)
except UserError as err:
    st.error(str(err))
    st.stop()

tokens = current.document_tokens()
st.subheader(f"{len(tokens)} documents, {tokens['tokens'].sum():,} tokens (cl100k)")
with st.expander("Tokens per document"):
    st.dataframe(tokens, hide_index=True)

def use_example():
    st.session_state["question"] = st.session_state["example"]


examples = [q.text for q in current.examples[:50]]
if "question" not in st.session_state:  # a shared link: ?question=...
    st.session_state["question"] = st.query_params.get("question", "")
if examples:
    st.selectbox("Example questions from the data set", [""] + examples, key="example", on_change=use_example)
question = st.text_area("Question", key="question")
cells = [ask.Cell(s, m) for s in strategies for m in models]
settings = [f"retrieval.top_k={top_k}", *([f"budget.context_tokens={budget}"] if budget else [])]

if question.strip() and cells:
    usd, usd_max = current.estimate(question, cells, settings)
    spent = current.budget.spent
    st.caption(f"Estimated cost of these {len(cells)} calls: ${usd:.4f} (up to ${usd_max:.4f} if every "
               f"fallback step runs); spent this session ${spent:.4f} of the ${max_usd:.2f} cap.")

clicked = st.button("Ask", type="primary", disabled=not (question.strip() and cells), key="ask")
# A link may ask by itself (?question=...&ask=1), but only when nothing it asks can cost money.
by_link = (st.query_params.get("ask") == "1" and question.strip() and cells and "results" not in st.session_state
           and current.estimate(question, cells, settings)[1] == 0)
if clicked or by_link:
    progress = {cell: st.empty() for cell in cells}
    for cell, slot in progress.items():
        slot.caption(f"{cell.label}: asking…")

    def growing(cell, answer, reasoning):  # a streamed answer as it arrives
        progress[cell].markdown(f"**{cell.label}** (answering…)\n\n{answer or '_thinking…_'}")

    def arrived(cell, r):  # each cell as it finishes (the calls run in parallel)
        progress[cell].caption(f"{cell.label}: {r.status}, ${r.cost_usd:.6f}, {r.latency_s or 0:.2f} s")

    st.session_state["results"] = current.ask(question, cells, settings, on_record=arrived, on_text=growing)
    for slot in progress.values():
        slot.empty()
    st.session_state["asked"] = question

results: dict = st.session_state.get("results") or {}
if results:
    st.header(f"Answers to: {st.session_state['asked']}")
    st.caption(f"MLflow run {current.run_id} (kind=ask), one trace per call")
    for strategy in dict.fromkeys(cell.strategy for cell in results):
        row = [cell for cell in results if cell.strategy == strategy]
        for column, cell in zip(st.columns(len(row)), row):
            r = results[cell]
            with column.container(border=True):
                st.markdown(f"**{cell.label}**")
                if r.answered:
                    st.markdown(r.answer or "_(empty answer)_")
                else:
                    st.error(f"{r.status}: {r.error}")
                if r.reasoning:
                    with st.expander("Reasoning"):
                        st.markdown(r.reasoning)
                st.markdown(f"tokens in {r.prompt_tokens - r.cache_hit_tokens:,} miss / {r.cache_hit_tokens:,} hit, "
                            f"out {r.completion_tokens:,} · **${r.cost_usd:.6f}** · {r.latency_s or 0:.2f} s"
                            + (f" (first token {r.ttft_s:.2f} s)" if r.ttft_s else "")
                            + (" · from the response cache" if r.cached else ""))
                if r.scores:
                    st.markdown(" · ".join(f"{k} {v:.3f}" for k, v in r.scores.items()))
                with st.expander(f"Context used: {len(r.context_ids)} items, {r.context_tokens:,} tokens"):
                    st.markdown("\n".join(f"- {c}" for c in r.context_ids) or "none")

    frame = ask.table(results)
    st.header("Compared")
    for name, config in ask.highlights(frame).items():
        st.success(f"{name}: {config}")
    paid = frame["cost_usd"].sum() > 0
    left, right = st.columns(2)
    with left:
        if paid:
            st.markdown("Cost per configuration (USD)")
            st.bar_chart(frame, x="config", y="cost_usd", horizontal=True)
        else:  # an all-zero chart says nothing
            st.info("Every answer came from a free model: no cost charts.")
        st.markdown("Token usage")
        st.bar_chart(frame, x="config", y=["input_miss", "input_hit", "output"], horizontal=True)
    with right:
        st.markdown("Response time (s)")
        st.bar_chart(frame, x="config", y="latency_s", horizontal=True)
        if paid:
            st.markdown("Cost against response time")
            st.scatter_chart(frame, x="latency_s", y="cost_usd", color="config")
    if frame["quality"].notna().any():
        shown = ask.quality_name(results.values())
        st.markdown(f"Quality against the data set's reference ({shown})")
        st.bar_chart(frame, x="config", y="quality", horizontal=True)
