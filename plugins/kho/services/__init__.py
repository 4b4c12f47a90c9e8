"""The running platform (`kho up`, `kho down`): background processes with pid and log files, Airflow's four
components on kho's environment, and the order everything starts and stops in."""
