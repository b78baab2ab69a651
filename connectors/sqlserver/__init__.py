"""SQL Server change tracking through pyodbc: the capture side's production source.

``source`` (the ``ChangeSource``), ``sql`` (every T-SQL statement), ``rows``,
``checks`` (the start-up checks of ``enrolstream source check``), ``config``
(connection strings).
"""
