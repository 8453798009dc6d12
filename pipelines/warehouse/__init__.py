"""After the load: the SQL model runner, data checks, report, HTML report and export."""
