"""SeqIO tasks for the paper: SuperGLUE text-to-text, transfer tasks, pretraining objectives, metrics.

Nothing is registered at import; call `register_tasks()` (gin-configurable)
once, or `register_jsonl_task(...)` for your own data. The name grammar is in
`prompt_tuning.data.tasks`.

    from prompt_tuning import data
    data.register_tasks()                       # all names of the grammar
    task = seqio.get_mixture_or_task('taskless_super_glue_rte_v102')
    data.verbalizers('taskless_super_glue_rte_v102')    # ('entailment', 'not_entailment')
    data.label_words('taskless_super_glue_record_v102') # ('commonsense', 'reasoning', ...)
"""
from prompt_tuning.data.superglue_score import superglue_score
from prompt_tuning.data.superglue import TASK_WORDS, VERBALIZERS
from prompt_tuning.data.tasks import (
    base_task,
    label_words,
    parse_task_name,
    verbalizers,
    register_jsonl_task,
    register_tasks,
    register_text_pretraining_tasks,
    superglue_task_name,
)
from prompt_tuning.data.vocab import DEFAULT_VOCAB_PATH, get_vocabulary
